"""The store benchmark's floors: each backend's own driver doing the same write with no store around it.

A floor writes the rows the store itself created (same table or key, same
row width, same triggers), one task per row, as a sensible user of that
driver would without flowengine:

- SQLite: one ``UPDATE ... WHERE id = ? AND version = ?`` on a connection
  opened exactly as the store opens its own (``flowengine_sqlite``'s
  ``connect``: WAL, ``synchronous = NORMAL``, ``secure_delete = ON``), run on
  one worker thread of its own like the store's (``threaded``), or on the
  event loop itself, blocking it (``inline``: the lower floor, shown beside);
- PostgreSQL: the store's ``UPDATE`` statement through a psycopg 3
  ``AsyncConnectionPool`` (autocommit, the pool's defaults otherwise);
- Redis: a ``GET`` then a ``SET`` of the record (a read and a write: the
  least a client-side compare-and-set takes) through one ``redis.asyncio``
  client and its pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

__all__ = ["Floor", "floors_for"]

_SQL_COLUMNS = (
    "spec, state, state_hash, version, created_at, expires_at, record,"
    " step_hour, step_source, step_event, step_error"
)


class Floor(Protocol):
    """One raw driver's round trip per ``step(task)``, on the row of the ``task``-th flow id."""

    name: str

    async def open(self, flow_ids: Sequence[str]) -> None: ...

    async def step(self, task: int) -> None: ...

    async def aclose(self) -> None: ...


class SQLiteFloor:
    """One UPDATE of the store's row, on a connection with the store's settings."""

    def __init__(self, url: str, *, threaded: bool) -> None:
        self.url = url
        self.threaded = threaded
        self.name = "sqlite3 UPDATE, " + ("own worker thread" if threaded else "inline (blocks the loop)")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-sqlite")
        self._rows: list[list[Any]] = []

    async def open(self, flow_ids: Sequence[str]) -> None:
        from flowengine_sqlite._connection import connect
        from flowengine_sqlite._url import parse_url

        target = parse_url(self.url)
        self._conn = await self._run(lambda: connect(target))
        select = f"SELECT {_SQL_COLUMNS}, id FROM flows WHERE id = ?"  # noqa: S608 - constant columns
        for flow_id in flow_ids:
            self._rows.append(
                list(await self._run(lambda i=flow_id: self._conn.execute(select, (i,)).fetchone()))
            )

    async def _run(self, work: Any) -> Any:
        if self.threaded:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        return work()

    async def step(self, task: int) -> None:
        row = self._rows[task]
        expected = row[3]
        row[3] = expected + 1
        update = (
            f"UPDATE flows SET ({_SQL_COLUMNS}) = (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant
            " WHERE id = ? AND version = ?"
        )
        count = await self._run(lambda: self._conn.execute(update, (*row, expected)).rowcount)
        assert count == 1

    async def aclose(self) -> None:
        if hasattr(self, "_conn"):
            await self._run(self._conn.close)
        self._executor.shutdown(wait=True)


class PostgresFloor:
    """The store's UPDATE through a psycopg 3 async pool (autocommit, default pool settings)."""

    name = "psycopg 3 async pool: UPDATE"

    def __init__(self, url: str) -> None:
        self.schema = url.split("schema=", 1)[1]
        self._rows: list[list[Any]] = []

    async def open(self, flow_ids: Sequence[str]) -> None:
        from psycopg_pool import AsyncConnectionPool

        self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            "postgresql://postgres@127.0.0.1:5432/test", kwargs={"autocommit": True}, open=False
        )
        await self._pool.open(wait=True)
        table = f'"{self.schema}".flows'
        self._update = (
            f"UPDATE {table} SET spec = %s, state = %s, state_hash = %s, version = %s, created_at = %s,"  # noqa: S608
            " expires_at = %s, record = %s, step_hour = %s, step_source = %s, step_event = %s,"
            " step_error = %s WHERE id = %s AND version = %s"
        )
        async with self._pool.connection() as conn:
            for flow_id in flow_ids:
                cursor = await conn.execute(
                    f"SELECT {_SQL_COLUMNS}, id FROM {table} WHERE id = %s",  # noqa: S608 - constant columns
                    (flow_id,),
                )
                self._rows.append(list(await cursor.fetchone() or ()))

    async def step(self, task: int) -> None:
        row = self._rows[task]
        expected = row[3]
        row[3] = expected + 1
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._update, (*row, expected))
        assert cursor.rowcount == 1

    async def aclose(self) -> None:
        if hasattr(self, "_pool"):
            await self._pool.close()


class RedisFloor:
    """A GET then a SET of a record the size of the store's, one ``redis.asyncio`` client."""

    name = "redis-py asyncio: GET + SET"

    def __init__(self, url: str) -> None:
        self.prefix = url.split("prefix=", 1)[1]

    async def open(self, flow_ids: Sequence[str]) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis(host="127.0.0.1", port=6379)
        self._keys = []
        for flow_id in flow_ids:
            blob = await self._client.hget(f"{self.prefix}flow:{flow_id}", "blob")
            assert blob is not None
            key = f"{self.prefix}floor:{flow_id}"
            await self._client.set(key, blob)
            self._keys.append(key)

    async def step(self, task: int) -> None:
        key = self._keys[task]
        blob = await self._client.get(key)
        assert blob is not None
        await self._client.set(key, blob)

    async def aclose(self) -> None:
        if hasattr(self, "_client"):
            await self._client.aclose()


def floors_for(backend: str, url: str) -> list[Floor]:
    """The floors of one backend, the one its target is measured against first."""
    if backend == "sqlite":
        return [SQLiteFloor(url, threaded=True), SQLiteFloor(url, threaded=False)]
    if backend == "postgres":
        return [PostgresFloor(url)]
    if backend == "redis":
        return [RedisFloor(url)]
    return []
