"""A PostgresStore's live pool: bound to the event loop that opened it, closed with that loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

    from flowengine_postgres._queries import Queries

    _Conn = AsyncConnection[TupleRow]

__all__ = ["Open", "close_with_the_loop", "forget"]


@attrs.frozen(slots=True)
class Open:
    """A store's live state: the loop its pool belongs to, the pool, the statements, the pool's closer."""

    loop: asyncio.AbstractEventLoop
    pool: AsyncConnectionPool[AsyncConnection[TupleRow]]
    queries: Queries
    closer: asyncio.Task[None]


async def close_with_the_loop(pool: AsyncConnectionPool[AsyncConnection[TupleRow]]) -> None:
    """Wait until cancelled, then close ``pool`` if ``aclose()`` has not.

    psycopg_pool's workers swallow ``CancelledError`` while they run a task
    (opening a connection, say), so a loop ending with an open pool (an
    ``asyncio.run`` whose code never called ``aclose()``) would wait on them
    forever. This task is cancelled with the others and stops them properly.
    """
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        if not pool.closed:
            await pool.close()


def forget(tasks: set[asyncio.Task[object]]) -> Callable[[asyncio.Task[object]], None]:
    """A done-callback: drop a finished straggler, read its outcome (none is "never retrieved")."""

    def done(task: asyncio.Task[object]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done
