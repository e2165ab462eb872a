"""Time, as the driver reads it and waits for it: injectable, so no test needs a timing window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "as_clock"]


@runtime_checkable
class Clock(Protocol):
    """Wall time in seconds (``clock()``) and a way to wait (``await clock.sleep(s)``)."""

    def __call__(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock just moves on)."""
        ...


class SystemClock:
    """The real clock: ``time.time`` and ``asyncio.sleep``."""

    def __call__(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class _Reading:
    """A plain ``() -> float`` as a Clock: its time, and real waiting."""

    def __init__(self, read: Callable[[], float]) -> None:
        self._read = read

    def __call__(self) -> float:
        return self._read()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def as_clock(clock: Clock | Callable[[], float]) -> Clock:
    """A Clock from a Clock, or from a plain function returning the time (which then waits for real)."""
    return clock if isinstance(clock, Clock) else _Reading(clock)
