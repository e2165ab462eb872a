"""The SQLite store: one file per test under tmp_path, inspected with the raw sqlite3 driver."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

from flowengine_sqlite import SQLiteStore

# Bytes no codec writes: neither JSON nor a sealed record.
DAMAGE = b"\xff\x00not a record{"


def db_path(url: str) -> Path:
    """The database file a ``sqlite://PATH?...`` URL names (read here without the plugin's parser)."""
    return Path(url.removeprefix("sqlite://").partition("?")[0])


def _siblings(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _execute(url: str, sql: str, params: tuple[object, ...]) -> None:
    conn = sqlite3.connect(db_path(url), timeout=5, isolation_level=None)
    try:
        assert conn.execute(sql, params).rowcount == 1, (sql, params)
    finally:
        conn.close()


class SQLiteBackend:
    name = "sqlite"
    durable = True
    age_leases = None  # the store's clock times its leases
    upstream = None

    def unavailable(self) -> str | None:
        return None  # sqlite3 is in the standard library

    def new_url(self, tmp_path: Path) -> str:
        return f"sqlite://{tmp_path / f'store-{uuid.uuid4().hex}.db'}"

    def open(self, url: str, clock: Callable[[], float]) -> SQLiteStore:
        return SQLiteStore.from_url(url, clock=clock)

    def via(self, url: str, host: str, port: int) -> str:
        raise NotImplementedError("the SQLite store has no server")

    def cleanup(self, url: str) -> None:
        for file in _siblings(db_path(url)):
            file.unlink(missing_ok=True)

    def corrupt_flow(self, url: str, flow_id: str) -> None:
        _execute(url, "UPDATE flows SET record = ? WHERE id = ?", (DAMAGE, flow_id))

    def corrupt_token(self, url: str, key: str) -> None:
        _execute(url, "UPDATE tokens SET record = ? WHERE key = ?", (DAMAGE, key))

    def raw_dump(self, url: str) -> bytes:
        """The database file and its WAL, after moving every committed page into the file."""
        path = db_path(url)
        conn = sqlite3.connect(path, timeout=5, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return b"".join(file.read_bytes() for file in _siblings(path) if file.exists())


BACKEND = SQLiteBackend()
