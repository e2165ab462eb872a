"""One round trip of a PostgresStore's statements."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg import AsyncConnection, sql
    from psycopg.abc import Params
    from psycopg.rows import TupleRow

    _Conn = AsyncConnection[TupleRow]

__all__ = ["check_ttl", "fetch_all", "fetch_one", "row_count"]


async def fetch_one(conn: _Conn, query: sql.Composed, params: Params) -> TupleRow | None:
    return await (await conn.execute(query, params)).fetchone()


async def fetch_all(conn: _Conn, query: sql.Composed, params: Params) -> list[TupleRow]:
    return await (await conn.execute(query, params)).fetchall()


async def row_count(conn: _Conn, query: sql.Composed, params: Params) -> int:
    return (await conn.execute(query, params)).rowcount


def check_ttl(ttl: float) -> None:
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"a lease needs a positive, finite ttl in seconds, not {ttl!r}")
