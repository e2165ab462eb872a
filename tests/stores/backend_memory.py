"""The memory store: one process only, objects not bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flowengine_memory import MemoryStore


class MemoryBackend:
    name = "memory"
    durable = False
    corrupt_flow = None
    corrupt_token = None
    raw_dump = None
    age_leases = None  # the store's clock times its leases
    upstream = None

    def unavailable(self) -> str | None:
        return None

    def new_url(self, tmp_path: Path) -> str:
        return "memory://"

    def cleanup(self, url: str) -> None:
        """Nothing outlives the store object."""

    def open(self, url: str, clock: Callable[[], float]) -> MemoryStore:
        return MemoryStore(clock=clock)

    def via(self, url: str, host: str, port: int) -> str:
        raise NotImplementedError("the memory store has no server")


BACKEND = MemoryBackend()
