"""For ``benchmarks.status``: each store's writes without the counts (the baseline), and their space.

The baseline is the same store doing the same writes with counting switched
off: SQLite without its count triggers (dropped, then made again from the
migration's own statements), PostgreSQL with them disabled, Redis with the
create and compare-and-set scripts as they were before counting (copied here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flowengine as fe

__all__ = ["Switch", "space", "switch_for"]

# The Redis scripts before counting (plugins/flowengine_redis/_scripts.py at da41e35).
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'spec', ARGV[2], 'state', ARGV[3], 'state_hash', ARGV[4],
           'version', ARGV[5], 'created_at', ARGV[6], 'expires_at', ARGV[7], 'blob', ARGV[8])
redis.call('SET', KEYS[2], ARGV[1])
if ARGV[9] ~= '0' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[9])
  redis.call('PEXPIREAT', KEYS[2], ARGV[9])
end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
return 1
"""
_CAS = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'spec', ARGV[3], 'state', ARGV[4], 'version', ARGV[5],
           'expires_at', ARGV[6], 'blob', ARGV[7])
local keep_state = redis.call('GET', KEYS[2]) == ARGV[2]
if ARGV[8] ~= '0' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[8])
  if keep_state then redis.call('PEXPIREAT', KEYS[2], ARGV[8]) end
else
  redis.call('PERSIST', KEYS[1])
  if keep_state then redis.call('PERSIST', KEYS[2]) end
end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
return 1
"""


class _UncountedRedis:
    """The Redis store's create and compare-and-set as they were before counting."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def create(self, flow: fe.Flow) -> None:
        s = self.store
        script = s._conn().redis.register_script(_CREATE)
        await script(
            keys=[s._flow_key(flow.id), s._state_key(flow.state_hash), s._flows_key, s._expiry_key],
            args=[
                flow.id,
                flow.spec,
                flow.state,
                flow.state_hash,
                flow.version,
                repr(flow.created_at),
                repr(flow.expires_at),
                s.codec.dump_flow(flow),
                s._native_expiry_ms(flow.expires_at),
            ],
        )

    async def compare_and_set(self, flow: fe.Flow, expected_version: int) -> bool:
        s = self.store
        script = s._conn().redis.register_script(_CAS)
        written = await script(
            keys=[s._flow_key(flow.id), s._state_key(flow.state_hash), s._expiry_key],
            args=[
                str(expected_version),
                flow.id,
                flow.spec,
                flow.state,
                flow.version,
                repr(flow.expires_at),
                s.codec.dump_flow(flow),
                s._native_expiry_ms(flow.expires_at),
            ],
        )
        return bool(written == 1)


class Switch:
    """``await switch(True|False)`` turns counting on or off; ``store``: the uncounted store, if separate."""

    def __init__(
        self,
        turn: Callable[[bool], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
        store: Any = None,
    ) -> None:
        self._turn, self._close, self.store = turn, close, store

    async def __call__(self, on: bool) -> None:
        await self._turn(on)

    async def close(self) -> None:
        await self._close()


def _sqlite_path(url: str) -> str:
    return url[len("sqlite://") :].split("?", 1)[0]


def _schema(url: str) -> str:
    return parse_qs(urlsplit(url).query)["schema"][0]


async def switch_for(name: str, url: str, store: fe.Store) -> Switch:
    """How to turn counting off and on again for the store at ``url``."""
    if name == "sqlite":
        import sqlite3

        from flowengine_sqlite._schema import _COUNTS

        triggers = [s for s in _COUNTS if "CREATE TRIGGER flows_counted" in s]
        conn = sqlite3.connect(_sqlite_path(url), isolation_level=None)
        state = {"on": True}

        async def turn(on: bool) -> None:
            if on == state["on"]:
                return
            for statement in triggers:
                name_ = statement.split("CREATE TRIGGER ", 1)[1].split()[0]
                conn.execute(statement if on else f"DROP TRIGGER {name_}")
            state["on"] = on

        async def close() -> None:
            conn.close()

        return Switch(turn, close)
    if name == "postgres":
        import psycopg
        from psycopg import sql

        pg = await psycopg.AsyncConnection.connect(
            "postgresql://postgres@127.0.0.1:5432/test", autocommit=True
        )
        table = sql.Identifier(_schema(url), "flows")

        async def turn(on: bool) -> None:
            verb = sql.SQL("ENABLE" if on else "DISABLE")
            await pg.execute(sql.SQL("ALTER TABLE {} {} TRIGGER flows_counted").format(table, verb))

        return Switch(turn, pg.close)

    async def nothing(on: bool) -> None:
        return None

    async def no_close() -> None:
        return None

    return Switch(nothing, no_close, _UncountedRedis(store))


async def space(name: str, url: str) -> dict[str, int]:
    """Bytes the counts take (and, for scale, the flows and tokens themselves)."""
    if name == "sqlite":
        import sqlite3

        with contextlib.closing(sqlite3.connect(_sqlite_path(url))) as conn:
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        return {str(k): int(v) for k, v in rows}
    if name == "postgres":
        import psycopg

        schema = _schema(url)
        async with await psycopg.AsyncConnection.connect("postgresql://postgres@127.0.0.1:5432/test") as pg:
            cur = await pg.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'i')",
                (schema,),
            )
            return {str(k): int(v) for k, v in await cur.fetchall()}
    return await _redis_space(url)


async def _redis_space(url: str) -> dict[str, int]:
    import redis.asyncio as redis

    prefix = parse_qs(urlsplit(url).query)["prefix"][0]
    client = redis.Redis(host="127.0.0.1", port=6379)
    sizes: dict[str, int] = {}
    try:
        for pattern, kind in (
            ("in:*", "in (flows per state)"),
            ("states", "states"),
            ("steps:*", "steps (per hour)"),
            ("step_hours", "step_hours"),
            ("health:*", "health (tokens)"),
            ("providers", "providers"),
            ("flows", "flows index (before counting)"),
            ("expiry", "expiry index (before counting)"),
            ("tokens", "tokens index (before counting)"),
        ):
            async for key in client.scan_iter(match=f"{prefix}{pattern}", count=1000):
                sizes[kind] = sizes.get(kind, 0) + int(await client.memory_usage(key, samples=0) or 0)
        sample = [k async for k in client.scan_iter(match=f"{prefix}flow:*", count=1000)][:1000]
        per_flow = sum([int(await client.memory_usage(k) or 0) for k in sample]) / max(1, len(sample))
        sizes["flow hash (mean of a sample)"] = round(per_flow)
    finally:
        await client.aclose()
    return sizes
