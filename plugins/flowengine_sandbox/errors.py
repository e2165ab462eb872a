"""The one exception the sandbox's own helpers raise."""

from __future__ import annotations

__all__ = ["SandboxError"]


class SandboxError(Exception):
    """The sandbox did not answer as expected, or could not start."""
