"""One round trip of a PostgresStore's statements, and the columns a flow is written as."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from flowengine import Flow, RecordCodec, hour_of, step_of

if TYPE_CHECKING:
    from psycopg import AsyncConnection, sql
    from psycopg.abc import Params
    from psycopg.rows import TupleRow

    _Conn = AsyncConnection[TupleRow]

__all__ = ["check_ttl", "fetch_all", "fetch_one", "flow_row", "row_count"]


async def fetch_one(conn: _Conn, query: sql.Composed, params: Params) -> TupleRow | None:
    return await (await conn.execute(query, params)).fetchone()


async def fetch_all(conn: _Conn, query: sql.Composed, params: Params) -> list[TupleRow]:
    return await (await conn.execute(query, params)).fetchall()


async def row_count(conn: _Conn, query: sql.Composed, params: Params) -> int:
    return (await conn.execute(query, params)).rowcount


def check_ttl(ttl: float) -> None:
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"a lease needs a positive, finite ttl in seconds, not {ttl!r}")


def flow_row(flow: Flow, codec: RecordCodec) -> tuple[object, ...]:
    """The flow's columns after ``id``, in the order the statements list them.

    The record, then the transition this write makes (``step_*``), which the
    triggers of migration 2 count.
    """
    step = step_of(flow)
    return (
        flow.spec,
        flow.state,
        flow.state_hash,
        flow.version,
        flow.created_at,
        flow.expires_at,
        codec.dump_flow(flow),
        None if step is None else hour_of(step.at),
        None if step is None else step.source,
        None if step is None else step.event,
        None if step is None else step.error,
    )
