"""PostgresStore: flows, tokens and leases in PostgreSQL tables, shared by every worker.

Nothing connects until the first call: ``open_store(url)`` only parses the URL
and picks the codec. The first call (in whatever event loop runs it) opens one
direct connection to apply migrations, which also makes an unreachable server
fail at once instead of after a pool timeout, then opens a psycopg
``AsyncConnectionPool`` bound to that loop. ``aclose()`` closes the pool (as
does the end of its loop, should nobody call it); the next call opens a new one.

Every driver failure leaves as ``StoreError``: ``store_unavailable`` naming the
server's address (never its password), or ``store_conflict`` for a unique
violation. Records are encoded and decoded outside the connection, so a pooled
connection is held only for the round trip.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
from flowengine import Flow, FlowError, Lease, RecordCodec, StoreError, Token, codec_for, digests_equal

from flowengine_postgres._url import PostgresURL, parse_url

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

    from flowengine_postgres._queries import Queries

__all__ = ["PostgresStore"]

log = logging.getLogger("flowengine.store")

# When libpq's connect_timeout is 0 (wait forever), a call still gives up
# waiting for a pooled connection after this long.
_POOL_TIMEOUT_FALLBACK = 30.0


@attrs.frozen(slots=True)
class _Open:
    """A store's live state: the loop its pool belongs to, the pool, the statements, the pool's closer."""

    loop: asyncio.AbstractEventLoop
    pool: AsyncConnectionPool[AsyncConnection[TupleRow]]
    queries: Queries
    closer: asyncio.Task[None]


async def _close_with_the_loop(pool: AsyncConnectionPool[AsyncConnection[TupleRow]]) -> None:
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


def _flow_row(flow: Flow, codec: RecordCodec) -> tuple[object, ...]:
    """The flow's columns after ``id``, in the order the statements list them, record last."""
    return (
        flow.spec,
        flow.state,
        flow.state_hash,
        flow.version,
        flow.created_at,
        flow.expires_at,
        codec.dump_flow(flow),
    )


class PostgresStore:
    """A Store in one PostgreSQL schema; safe for many tasks, processes and hosts at once.

    Use one store object per event loop: its pool is bound to the loop that
    opened it. Two store objects (in one process or many) on the same database
    and schema see the same flows, tokens and leases.
    """

    def __init__(self, url: PostgresURL, codec: RecordCodec) -> None:
        self.url = url
        self._codec = codec
        self._open: _Open | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """A store for ``postgresql://…`` (see ``parse_url``); connects on first use, not here."""
        parsed = parse_url(url)
        return cls(parsed, codec_for({"key_file": parsed.key_file} if parsed.key_file else {}))

    def __repr__(self) -> str:
        return f"PostgresStore({self.url.address!r}, schema={self.url.schema!r})"

    # -- connections ---------------------------------------------------------

    async def _opened(self) -> _Open:
        loop = asyncio.get_running_loop()
        if self._open is not None and self._open.loop is not loop and self._open.loop.is_closed():
            # Its loop ended (``asyncio.run`` returned) and the closer task closed its pool.
            self._open = None
        if self._open is None:
            # One lock per loop: a lock that waited once is bound to that loop.
            if self._opening is None or self._opening[0] is not loop:
                self._opening = (loop, asyncio.Lock())
            async with self._opening[1]:
                if self._open is None:
                    self._open = await self._connect(loop)
        if self._open.loop is not loop:
            raise StoreError(
                f"{self!r} is open in another event loop; use one store per loop (or aclose() it first)",
                code="store_unavailable",
                retryable=False,
            )
        return self._open

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Open:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        from flowengine_postgres._migrations import migrate
        from flowengine_postgres._queries import Queries

        kwargs = {**self.url.connect_kwargs(), "autocommit": True}
        async with await psycopg.AsyncConnection.connect(**kwargs) as conn:
            await migrate(conn, self.url.schema)
        timeout = float(self.url.connect_timeout) or _POOL_TIMEOUT_FALLBACK
        pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
            kwargs=kwargs,
            min_size=self.url.min_size,
            max_size=self.url.max_size,
            timeout=timeout,
            name=f"flowengine-{self.url.schema}",
            # One empty round trip per checkout: a connection the server dropped
            # (restart, failover, idle timeout) is replaced instead of failing a call.
            check=AsyncConnectionPool.check_connection,
            open=False,
        )
        try:
            # Waiting for min_size connections spares the first calls a wait that
            # would make the pool grow beyond what it needs.
            await pool.open(wait=True, timeout=timeout)
        except BaseException:
            await pool.close()
            raise
        closer = loop.create_task(_close_with_the_loop(pool), name=f"flowengine-{self.url.schema}-closer")
        return _Open(loop, pool, Queries.for_schema(self.url.schema), closer)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[tuple[AsyncConnection[TupleRow], Queries]]:
        """A pooled connection and the statements; driver errors become ``StoreError``."""
        try:
            opened = await self._opened()
            async with opened.pool.connection() as conn:
                yield conn, opened.queries
        except FlowError:
            raise
        except Exception as exc:
            error = self._driver_error(exc)
            if error is None:
                raise
            raise error from None

    def _driver_error(self, exc: Exception) -> StoreError | None:
        """The StoreError for a psycopg or network failure; None for anything else (a bug)."""
        import psycopg

        if isinstance(exc, psycopg.IntegrityError):
            return StoreError(
                f"postgres store at {self.url.address}: a unique value is already taken",
                code="store_conflict",
                retryable=False,
            )
        if not isinstance(exc, psycopg.Error | OSError | TimeoutError):
            return None
        reason = (str(exc).strip().splitlines() or [""])[0]
        if self.url.password:
            reason = reason.replace(self.url.password, "***")
        # Lost connections and timeouts may pass; bad data or a broken schema will not.
        transient = isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError | OSError | TimeoutError
        )
        return StoreError(
            f"postgres store at {self.url.address} (schema {self.url.schema!r}) is unavailable:"
            f" {type(exc).__name__}: {reason[:200]}",
            code="store_unavailable",
            retryable=transient,
        )

    # -- flows -----------------------------------------------------------------

    async def create(self, flow: Flow) -> None:
        """Add a new flow; ``store_conflict`` if its id or its state digest is taken."""
        row = _flow_row(flow, self._codec)
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.create_flow, (flow.id, *row))
            created = cur.rowcount == 1
        if not created:
            raise StoreError(
                f"flow {flow.id!r} already exists (its id or state is taken)",
                code="store_conflict",
                retryable=False,
            )

    async def get(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None; ``store_corrupt`` naming it when its record is damaged."""
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.get_flow, (flow_id,))
            row = await cur.fetchone()
        return None if row is None else self._codec.load_flow(row[0], flow_id)

    async def get_by_state(self, state_hash: str) -> Flow | None:
        """The flow whose state digest this is, or None.

        The index finds the row; the record's own digest is then compared in
        constant time, so a row whose column and record disagree is refused.
        """
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.get_flow_by_state, (state_hash,))
            row = await cur.fetchone()
        if row is None:
            return None
        flow = self._codec.load_flow(row[1], row[0])
        if not digests_equal(flow.state_hash, state_hash):
            raise StoreError(
                f"stored flow {row[0]!r} does not match its state digest",
                code="store_corrupt",
                retryable=False,
            )
        return flow

    async def list_flows(self, *, spec: str | None = None, state: str | None = None) -> list[Flow]:
        """Flows, oldest first, filtered in SQL; damaged records are skipped with a warning."""
        params = [value for value in (spec, state) if value is not None]
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.list_flows(spec=spec is not None, state=state is not None), params)
            rows = await cur.fetchall()
        flows: list[Flow] = []
        for flow_id, record in rows:
            try:
                flows.append(self._codec.load_flow(record, flow_id))
            except StoreError as exc:
                if exc.code == "store_key_missing":
                    raise  # not one damaged record: without the key no sealed record can be read
                log.warning("postgres store %s: skipping flow %r: %s", self.url.schema, flow_id, exc.message)
        return flows

    async def compare_and_set(self, flow: Flow, expected_version: int) -> bool:
        """Replace the flow if its stored version is ``expected_version``: one conditional UPDATE.

        Of any number of racing writers with the same expected version, the
        first UPDATE to commit changes the version and the others match no row.
        """
        row = _flow_row(flow, self._codec)
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.compare_and_set, (*row, flow.id, expected_version))
            return cur.rowcount == 1

    async def delete(self, flow_id: str) -> bool:
        """Remove a flow; True if there was one."""
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.delete_flow, (flow_id,))
            return cur.rowcount == 1

    async def purge(self, now: float) -> int:
        """Remove flows whose ``expires_at`` is before ``now``; how many went.

        Leases that ran out (by the database clock) are swept too, so keys such
        as ``exchange:<flow id>`` left by crashed workers do not pile up.
        """
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.purge_flows, (now,))
            removed = cur.rowcount
            await conn.execute(q.purge_leases)
        return removed

    # -- tokens ----------------------------------------------------------------

    async def put_token(self, token: Token) -> None:
        """Insert or replace the token under ``token.key``."""
        record = self._codec.dump_token(token)
        async with self._connection() as (conn, q):
            await conn.execute(q.put_token, (token.key, token.provider, token.expires_at, record))

    async def get_token(self, key: str) -> Token | None:
        """The token under ``key``, or None; ``store_corrupt`` naming it when damaged or keyed otherwise."""
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.get_token, (key,))
            row = await cur.fetchone()
        return None if row is None else self._codec.load_token(row[0], key)

    async def list_tokens(
        self, *, provider: str | None = None, expiring_before: float | None = None
    ) -> list[Token]:
        """Tokens by key, filtered in SQL (only the matches are decrypted); damaged ones skipped."""
        params = [value for value in (provider, expiring_before) if value is not None]
        async with self._connection() as (conn, q):
            query = q.list_tokens(provider=provider is not None, expiring_before=expiring_before is not None)
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        tokens: list[Token] = []
        for key, record in rows:
            try:
                tokens.append(self._codec.load_token(record, key))
            except StoreError as exc:
                if exc.code == "store_key_missing":
                    raise  # not one damaged record: without the key no sealed record can be read
                log.warning("postgres store %s: skipping token %r: %s", self.url.schema, key, exc.message)
        return tokens

    async def delete_token(self, key: str) -> bool:
        """Remove a token; True if there was one."""
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.delete_token, (key,))
            return cur.rowcount == 1

    # -- leases ----------------------------------------------------------------

    async def acquire(self, key: str, ttl: float) -> Lease | None:
        """Take the lease ``key`` for ``ttl`` seconds, or None while another holds a live one.

        One ``INSERT … ON CONFLICT DO UPDATE … WHERE expired`` decides, timed by
        the database clock, so workers with skewed clocks agree on expiry.
        ``Lease.expires_at`` is in that clock (Unix seconds).
        """
        owner = secrets.token_urlsafe(16)
        async with self._connection() as (conn, q):
            cur = await conn.execute(q.acquire, {"key": key, "owner": owner, "ttl": float(ttl)})
            row = await cur.fetchone()
        return None if row is None else Lease(key, owner, float(row[0]))

    async def release(self, lease: Lease) -> None:
        """Give a lease back; a no-op when it ran out and another worker took it since."""
        async with self._connection() as (conn, q):
            await conn.execute(q.release, (lease.key, lease.token))

    async def aclose(self) -> None:
        """Close the pool (in the loop that opened it); the store reconnects if used again."""
        opened = self._open
        if (
            opened is not None
            and not opened.loop.is_closed()
            and opened.loop is not asyncio.get_running_loop()
        ):
            raise StoreError(f"{self!r} must be closed in the event loop that opened it", retryable=False)
        self._open = None
        if opened is None or opened.loop.is_closed():
            return
        try:
            await opened.pool.close()
        except Exception as exc:
            error = self._driver_error(exc)
            if error is None:
                raise
            raise error from None
        finally:
            opened.closer.cancel()
            await asyncio.wait([opened.closer])
