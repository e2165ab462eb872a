"""The one exception the sandbox's own helpers raise."""

from __future__ import annotations

__all__ = ["SandboxError"]


class SandboxError(RuntimeError):
    """The sandbox did not answer as expected, or could not start."""
