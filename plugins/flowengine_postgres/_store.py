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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from flowengine import (
    Flow,
    FlowCounts,
    FlowError,
    Lease,
    RecordCodec,
    StoreError,
    Token,
    TokenCounts,
    check_token_query,
    codec_for,
    digests_equal,
    flow_columns,
    hour_of,
)

from flowengine_postgres import _counts
from flowengine_postgres._pool import Liveness, Open, close_with_the_loop, forget
from flowengine_postgres._rows import check_ttl, fetch_all, fetch_one, row_count
from flowengine_postgres._url import PostgresURL, parse_url

_T = TypeVar("_T")

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

    from flowengine_postgres._queries import Queries

    _Conn = AsyncConnection[TupleRow]
    _Work = Callable[[_Conn, Queries], Awaitable[_T]]

__all__ = ["PostgresStore"]

log = logging.getLogger("flowengine.store")

# When libpq's connect_timeout is 0 (wait forever), a call still gives up
# waiting for a pooled connection after this long.
_POOL_TIMEOUT_FALLBACK = 30.0
# A pooled connection not handed out for this many seconds is checked with a round trip.
_IDLE_CHECK = 10.0


class _TooLate(Exception):
    """The ``command_timeout`` of a call passed before its work ended."""


def _too_late(answer: asyncio.Future[Any]) -> None:
    if not answer.done():
        answer.set_exception(_TooLate())


class PostgresStore:
    """A Store in one PostgreSQL schema; safe for many tasks, processes and hosts at once.

    Use one store object per event loop: its pool is bound to the loop that
    opened it. Two store objects (in one process or many) on the same database
    and schema see the same flows, tokens and leases.
    """

    def __init__(self, url: PostgresURL, codec: RecordCodec) -> None:
        self.url = url
        self._codec = codec
        self._open: Open | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        # Calls past their command_timeout, still ending (see _run).
        self._stragglers: set[asyncio.Task[object]] = set()

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """A store for ``postgresql://…`` (see ``parse_url``); connects on first use, not here."""
        parsed = parse_url(url)
        return cls(parsed, codec_for({"key_file": parsed.key_file} if parsed.key_file else {}))

    def __repr__(self) -> str:
        return f"PostgresStore({self.url.address!r}, schema={self.url.schema!r})"

    # -- connections ---------------------------------------------------------

    async def _opened(self) -> Open:
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

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Open:
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
            # A connection the server dropped (restart, failover, idle timeout) is
            # replaced instead of failing a call; a round trip only when it may be dead.
            check=Liveness(_IDLE_CHECK),
            # The pool retries a failed connect with a growing backoff (1 s, 2 s, 4 s...):
            # giving up after command_timeout keeps it short, and the next call starts
            # afresh, so once the server is back the pool reconnects within seconds.
            reconnect_timeout=self.url.command_timeout,
            open=False,
        )
        try:
            # Waiting for min_size connections spares the first calls a wait that
            # would make the pool grow beyond what it needs.
            await pool.open(wait=True, timeout=timeout)
        except BaseException:
            await pool.close()
            raise
        closer = loop.create_task(close_with_the_loop(pool), name=f"flowengine-{self.url.schema}-closer")
        return Open(loop, pool, Queries.for_schema(self.url.schema), closer)

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

    async def _run(self, work: _Work[_T]) -> _T:
        """Run ``work`` on a pooled connection, within ``command_timeout`` seconds in all.

        Past the deadline the caller gets ``store_unavailable`` at once. The work
        itself is cancelled and left to end in the background: psycopg first asks
        the server to cancel the query (5 s at most for that, 5 s more for the
        answer), then closes a connection still busy rather than pool it. So the
        work runs in a task of its own, which settles the caller's ``answer`` itself;
        a timer settles it at the deadline (one future and one timer: a ``wait_for``
        around a ``shield`` took two more turns of the event loop per call).
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[_T] = loop.create_future()
        task = loop.create_task(self._answer(work, answer))
        timer = loop.call_later(self.url.command_timeout, _too_late, answer)
        try:
            return await answer
        except _TooLate:
            self._abandon(task)
            raise StoreError(
                f"postgres store at {self.url.address} (schema {self.url.schema!r}) did not answer"
                f" within {self.url.command_timeout:g} s (command_timeout)",
                code="store_unavailable",
                retryable=True,
            ) from None
        except asyncio.CancelledError:  # the caller gave up: so does the work
            self._abandon(task)
            raise
        finally:
            timer.cancel()

    async def _answer(self, work: _Work[_T], answer: asyncio.Future[_T]) -> None:
        """Run ``work`` on a pooled connection; settle ``answer`` with its outcome, if still unsettled."""
        try:
            result = await self._on_connection(work)
        except Exception as exc:
            if not answer.done():  # else the caller has had its answer (the deadline, or it gave up)
                answer.set_exception(exc)
            return
        if not answer.done():
            answer.set_result(result)

    def _abandon(self, task: asyncio.Task[_T]) -> None:
        """Cancel ``task`` and keep it until it ends, so that ``aclose`` can wait for it."""
        task.cancel()
        if not task.done():
            self._stragglers.add(task)
            task.add_done_callback(forget(self._stragglers))

    async def _on_connection(self, work: _Work[_T]) -> _T:
        async with self._connection() as (conn, q):
            return await work(conn, q)

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
        row = flow_columns(flow, self._codec.dump_flow(flow))  # the statements' order, after id

        async def work(conn: _Conn, q: Queries) -> bool:
            return (await conn.execute(q.create_flow, (flow.id, *row))).rowcount == 1

        if not await self._run(work):
            raise StoreError(
                f"flow {flow.id!r} already exists (its id or state is taken)",
                code="store_conflict",
                retryable=False,
            )

    async def get(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None; ``store_corrupt`` naming it when its record is damaged."""
        row = await self._run(lambda conn, q: fetch_one(conn, q.get_flow, (flow_id,)))
        return None if row is None else self._codec.load_flow(row[0], flow_id)

    async def get_by_state(self, state_hash: str) -> Flow | None:
        """The flow whose state digest this is, or None.

        The index finds the row; the record's own digest is then compared in
        constant time, so a row whose column and record disagree is refused.
        """
        row = await self._run(lambda conn, q: fetch_one(conn, q.get_flow_by_state, (state_hash,)))
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
        rows = await self._run(
            lambda conn, q: fetch_all(
                conn, q.list_flows(spec=spec is not None, state=state is not None), params
            )
        )
        return self._readable(rows, self._codec.load_flow, "flow")

    async def compare_and_set(self, flow: Flow, expected_version: int) -> bool:
        """Replace the flow if its stored version is ``expected_version``: one conditional UPDATE.

        Of any number of racing writers with the same expected version, the
        first UPDATE to commit changes the version and the others match no row.
        """
        row = flow_columns(flow, self._codec.dump_flow(flow))  # the statements' order, after id
        return (
            await self._run(
                lambda conn, q: row_count(conn, q.compare_and_set, (*row, flow.id, expected_version))
            )
            == 1
        )

    async def delete(self, flow_id: str) -> bool:
        """Remove a flow; True if there was one."""
        return await self._run(lambda conn, q: row_count(conn, q.delete_flow, (flow_id,))) == 1

    async def purge(self, now: float) -> int:
        """Remove flows whose ``expires_at`` is before ``now``; how many went.

        Leases that ran out (by the database clock) are swept too, so keys such
        as ``exchange:<flow id>`` left by crashed workers do not pile up, and
        transition counts older than ``FlowCounts.KEPT``.
        """

        async def work(conn: _Conn, q: Queries) -> int:
            removed = await row_count(conn, q.purge_flows, (now,))
            await conn.execute(q.purge_leases)
            await conn.execute(q.purge_steps, (now - FlowCounts.KEPT,))
            return removed

        return await self._run(work)

    # -- tokens ----------------------------------------------------------------

    async def put_token(self, token: Token) -> None:
        """Insert or replace the token under ``token.key``."""
        row = (token.key, token.provider, token.expires_at, self._codec.dump_token(token))
        health = _counts.health_columns(token)
        await self._run(lambda conn, q: row_count(conn, q.put_token, (*row, *health)))

    async def get_token(self, key: str) -> Token | None:
        """The token under ``key``, or None; ``store_corrupt`` naming it when damaged or keyed otherwise."""
        row = await self._run(lambda conn, q: fetch_one(conn, q.get_token, (key,)))
        return None if row is None else self._codec.load_token(row[0], key)

    async def list_tokens(
        self, *, provider: str | None = None, expiring_before: float | None = None
    ) -> list[Token]:
        """Tokens by key, filtered in SQL (only the matches are decrypted); damaged ones skipped."""
        params = [value for value in (provider, expiring_before) if value is not None]
        filters = {"provider": provider is not None, "expiring_before": expiring_before is not None}
        rows = await self._run(lambda conn, q: fetch_all(conn, q.list_tokens(**filters), params))
        return self._readable_tokens(rows)

    async def delete_token(self, key: str) -> bool:
        """Remove a token; True if there was one."""
        return await self._run(lambda conn, q: row_count(conn, q.delete_token, (key,))) == 1

    # -- counts ----------------------------------------------------------------

    async def flow_counts(self, *, since: float, spec: str | None = None) -> FlowCounts:
        """Flows per spec and state now, and transitions per hour from ``since``'s hour on.

        Sums of the rows the triggers keep (``_counts``): no flow is read.
        """
        return await self._run(lambda conn, q: _counts.flow_counts(conn, q, hour_of(since), spec))

    async def token_counts(
        self, *, now: float, within: float, provider: str | None = None, limit: int = 20
    ) -> TokenCounts:
        """Tokens per provider by health at ``now``; up to ``limit`` per provider needing attention.

        Tokens stored before counting began are classified first (once; see ``_counts``).
        """
        check_token_query(now, within, limit)
        unclassified = await self._run(lambda conn, q: fetch_all(conn, q.unclassified, ()))
        if unclassified:
            await self._classify(unclassified)
        query = (now, within, provider, limit)
        counts, rows = await self._run(lambda conn, q: _counts.token_counts(conn, q, query))
        tokens = self._readable_tokens(rows)
        return _counts.with_attention(counts, tokens, limit)

    async def _classify(self, rows: list[TupleRow]) -> None:
        values = []
        for key, record in rows:
            try:
                token = self._codec.load_token(record, key)
            except StoreError as exc:
                if exc.code == "store_key_missing":
                    raise
                log.warning("postgres store %s: cannot count token %r: %s", self.url.schema, key, exc.message)
                continue
            values.append((*_counts.health_columns(token), key, record))

        async def work(conn: _Conn, q: Queries) -> None:
            async with conn.cursor() as cursor:
                await cursor.executemany(q.classify, values)

        await self._run(work)

    def _readable_tokens(self, rows: list[TupleRow]) -> list[Token]:
        return self._readable(rows, self._codec.load_token, "token")

    def _readable(self, rows: list[TupleRow], load: Callable[[bytes, str], _T], what: str) -> list[_T]:
        """Decode (id, record) ``rows``, skipping (and logging) the ones that cannot be read."""
        found: list[_T] = []
        for name, record in rows:
            try:
                found.append(load(record, name))
            except StoreError as exc:
                if exc.code == "store_key_missing":
                    raise  # not one damaged record: without the key no sealed record can be read
                log.warning("postgres store %s: skipping %s %r: %s", self.url.schema, what, name, exc.message)
        return found

    # -- leases ----------------------------------------------------------------

    async def acquire(self, key: str, ttl: float) -> Lease | None:
        """Take the lease ``key`` for ``ttl`` seconds, or None while another holds a live one.

        One ``INSERT … ON CONFLICT DO UPDATE … WHERE expired`` decides, timed by
        the database clock, so workers with skewed clocks agree on expiry.
        ``Lease.expires_at`` is in that clock (Unix seconds).
        """
        check_ttl(ttl)
        owner = secrets.token_urlsafe(16)
        params = {"key": key, "owner": owner, "ttl": float(ttl)}
        row = await self._run(lambda conn, q: fetch_one(conn, q.acquire, params))
        return None if row is None else Lease(key, owner, float(row[0]))

    async def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend the lease to ``ttl`` seconds from now (database clock) while it is ours and live."""
        check_ttl(ttl)
        params = {"key": lease.key, "owner": lease.token, "ttl": float(ttl)}
        row = await self._run(lambda conn, q: fetch_one(conn, q.renew, params))
        return None if row is None else Lease(lease.key, lease.token, float(row[0]))

    async def release(self, lease: Lease) -> None:
        """Give a lease back; a no-op when it ran out and another worker took it since.

        Tried twice: releasing is idempotent, and the first try after an
        outage may meet a connection the outage killed.
        """
        for attempt in range(2):
            try:
                await self._run(lambda conn, q: row_count(conn, q.release, (lease.key, lease.token)))
                return
            except StoreError as exc:
                if attempt == 1 or exc.code != "store_unavailable":
                    raise

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
        for straggler in list(self._stragglers):
            straggler.cancel()  # a second cancel: psycopg closes the connection at once
        if self._stragglers:
            await asyncio.wait(list(self._stragglers))
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
