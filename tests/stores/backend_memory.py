"""The memory store: one process only, objects not bytes."""

from __future__ import annotations

from pathlib import Path


class MemoryBackend:
    name = "memory"
    durable = False
    corrupt_flow = None
    corrupt_token = None
    raw_dump = None

    def unavailable(self) -> str | None:
        return None

    def new_url(self, tmp_path: Path) -> str:
        return "memory://"

    def cleanup(self, url: str) -> None:
        """Nothing outlives the store object."""


BACKEND = MemoryBackend()
