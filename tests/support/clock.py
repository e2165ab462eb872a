"""A clock a test moves by hand: time passes only when the test says so.

Pass ``clock.now`` wherever a ``clock`` (a callable returning Unix seconds) is
taken: the memory and SQLite stores, ``AsyncEngine``. ``sleep`` advances the
clock instead of waiting, and yields once to the event loop so other tasks run.
"""

from __future__ import annotations

import asyncio

__all__ = ["FakeClock"]


class FakeClock:
    """Unix seconds that move only on ``advance`` (or ``sleep``)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        """The current (fake) time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward; never backward."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds!r} s)")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass at once, then give the other tasks a turn."""
        self.advance(seconds)
        await asyncio.sleep(0)
