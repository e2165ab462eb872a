"""The specs that ship with flowengine (``specs/``), and ``FLOWENGINE_SPEC_PATH``.

``FLOWENGINE_SPEC_PATH`` lists extra folders (``os.pathsep``-separated) that
are searched before the bundled ones, so a user's spec can shadow a shipped one.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from flowengine import hookimpl

__all__ = ["bundled_specs", "flowengine_spec_paths"]


@functools.cache
def bundled_specs() -> Path:
    """The folder of shipped specs: inside the wheel, or ``specs/`` of a source checkout."""
    inside = Path(__file__).parent / "specs"
    return inside if inside.is_dir() else Path(__file__).resolve().parents[2] / "specs"


@hookimpl
def flowengine_spec_paths() -> list[Path]:
    """Folders from ``FLOWENGINE_SPEC_PATH``, then the bundled specs."""
    extra = [Path(p) for p in os.environ.get("FLOWENGINE_SPEC_PATH", "").split(os.pathsep) if p]
    return [*extra, bundled_specs()]
