"""A PostgresStore's live pool: bound to the event loop that opened it, closed with that loop.

And the pool's check of a connection it hands out (``Liveness``).
"""

from __future__ import annotations

import asyncio
import select
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

    from flowengine_postgres._queries import Queries

    _Conn = AsyncConnection[TupleRow]

__all__ = ["Liveness", "Open", "close_with_the_loop", "forget"]


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


def _readable(fd: int) -> bool:
    """True when ``fd`` has something to read (or has hung up) right now; never waits."""
    if hasattr(select, "poll"):  # not bounded by FD_SETSIZE as select() is
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


class Liveness:
    """The pool's ``check``: a round trip to the server only for a connection that may be dead.

    psycopg_pool calls it on every checkout, and replaces a connection it fails. An
    empty query every time (the pool's own ``check_connection``) costs a round trip
    per call. This one sends it only when the connection may have died: when its
    socket has something to read between queries (a server restarting, shutting down,
    or ending the session sends a FATAL notice and closes; a cut connection reads a
    reset or an end of file: found without a round trip), when it is new to the check,
    or when it has not been handed out for ``idle`` seconds (a peer gone silently, a
    firewall that dropped the connection, are found only by writing to it).
    """

    def __init__(self, idle: float) -> None:
        self._idle = idle
        self._used: weakref.WeakKeyDictionary[_Conn, float] = weakref.WeakKeyDictionary()

    async def __call__(self, conn: _Conn) -> None:
        from psycopg_pool import AsyncConnectionPool

        now = time.monotonic()
        last = self._used.get(conn)
        self._used[conn] = now
        if last is None or now - last > self._idle or conn.closed or _readable(conn.pgconn.socket):
            await AsyncConnectionPool.check_connection(conn)
