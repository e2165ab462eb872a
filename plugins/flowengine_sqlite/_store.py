"""The SQLite store: flows, tokens and leases as rows of one file.

Calls run on the store's worker thread (``_worker.py``); a record to write is
encoded before the hand-off, on the caller's loop, so that the thread does
SQLite's work only (which runs without the GIL, beside the loop). Several store
objects or processes on one file are kept apart by SQLite's own locks:
single-statement writes, ``BEGIN IMMEDIATE`` where a read must precede a
write, and the busy timeout while waiting for either.

A write that supersedes a secret (a flow whose stored record held a code, a
verifier or a device code that the write drops or replaces, or that it deletes or
purges; a token replaced or deleted) is followed, as soon as no other call is
queued, by a WAL checkpoint that truncates the ``-wal`` file, so no copy of it keeps
the old values (SECURITY.md 30). A write over a record that held none (every step
of a flow after its exchange) supersedes nothing and leaves the WAL alone: which is
which is known from the row's ``holds_secret`` column, read in the write's own
transaction (``_rows``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flowengine import (
    Flow,
    FlowCounts,
    Lease,
    RecordCodec,
    StoreError,
    Token,
    TokenCounts,
    check_token_query,
    codec_for,
    hour_of,
)

from flowengine_sqlite import _counts
from flowengine_sqlite._rows import (
    FLOW_COLUMNS,
    flow_values,
    holds_secret,
    load_flow,
    load_token,
    supersedes,
)
from flowengine_sqlite._schema import immediate
from flowengine_sqlite._url import SQLiteTarget, parse_url
from flowengine_sqlite._worker import Worker

__all__ = ["SQLiteStore"]

log = logging.getLogger("flowengine.store")

_T = TypeVar("_T")

# Whole queries, not assembled ones: one per filter combination, each able to use an index.
_CREATE_FLOW = f"INSERT INTO flows ({FLOW_COLUMNS}, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
_UPDATE_FLOW = f"UPDATE flows SET ({FLOW_COLUMNS}) = (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE id = ?"  # noqa: S608
# The same, at the version a compare-and-set expects, of a row whose record holds no secret.
_UPDATE_CLEAN = f"{_UPDATE_FLOW} AND version = ? AND holds_secret = 0"
_GET_FLOW = "SELECT id, spec, state, state_hash, version, record FROM flows WHERE id = ?"
_GET_FLOW_BY_STATE = "SELECT id, spec, state, state_hash, version, record FROM flows WHERE state_hash = ?"
_LIST_FLOWS = {  # keyed by (spec given, state given)
    (False, False): "SELECT id, spec, state, state_hash, version, record FROM flows ORDER BY created_at, id",
    (True, False): "SELECT id, spec, state, state_hash, version, record FROM flows"
    " WHERE spec = ? ORDER BY created_at, id",
    (False, True): "SELECT id, spec, state, state_hash, version, record FROM flows"
    " WHERE state = ? ORDER BY created_at, id",
    (True, True): "SELECT id, spec, state, state_hash, version, record FROM flows"
    " WHERE spec = ? AND state = ? ORDER BY created_at, id",
}
# The stored row at the version a compare-and-set expects: whether its record held a secret (and it).
_HELD = "SELECT holds_secret, NULL FROM flows WHERE id = ? AND version = ?"
_HELD_RECORD = "SELECT holds_secret, record FROM flows WHERE id = ? AND version = ?"
_LIST_TOKENS = {  # keyed by (provider given, expiring_before given)
    (False, False): "SELECT key, provider, record FROM tokens ORDER BY key",
    (True, False): "SELECT key, provider, record FROM tokens WHERE provider = ? ORDER BY key",
    (False, True): "SELECT key, provider, record FROM tokens WHERE expires_at < ? ORDER BY key",
    (True, True): "SELECT key, provider, record FROM tokens"
    " WHERE provider = ? AND expires_at < ? ORDER BY key",
}


def _check_ttl(ttl: float) -> None:
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"a lease needs a positive, finite ttl in seconds, not {ttl!r}")


class SQLiteStore:
    """A Store kept in one SQLite file (``sqlite:///path.db``): the embedded default.

    Safe for several asyncio tasks, several event loops, several store objects
    and several processes on one host sharing the file. The file is opened on
    first use, not when the store is made, and closed by ``aclose()``; a
    closed store refuses further calls. ``clock`` (Unix seconds, ``time.time``
    by default) times leases: every process sharing the file must use the same.
    """

    def __init__(
        self,
        target: SQLiteTarget,
        codec: RecordCodec | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._target = target
        self._codec = codec if codec is not None else codec_for(target.options)
        self._worker = Worker(target)
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> SQLiteStore:
        """The store for a ``sqlite://`` URL; ``ConfigError`` when the URL or its key is wrong."""
        return cls(parse_url(url), clock=clock)

    @property
    def path(self) -> Path:
        """The database file (absolute)."""
        return self._target.path

    @property
    def sealed(self) -> bool:
        """True when records are encrypted at rest."""
        return self._codec.sealed

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _forget(self) -> None:
        """A write superseded secrets: the worker empties the WAL once no call is queued."""
        self._worker.superseded()

    # -- rows ------------------------------------------------------------------------------------

    def _load_flow(self, row: Sequence[Any]) -> Flow:
        return load_flow(row, self._codec)

    def _load_token(self, row: Sequence[Any]) -> Token:
        return load_token(row, self._codec)

    def _readable_tokens(self, rows: list[Any]) -> list[Token]:
        return self._readable(rows, self._load_token)

    def _readable(self, rows: list[Any], load: Callable[[Sequence[Any]], _T]) -> list[_T]:
        """Decode ``rows``, skipping (and logging) the ones that cannot be read."""
        found: list[_T] = []
        for row in rows:
            try:
                found.append(load(row))
            except StoreError as exc:
                if exc.code == "store_key_missing":
                    raise  # not one damaged record: without the key no sealed record can be read
                log.warning("the SQLite store %s skipped a record: %s", self.path, exc.message)
        return found

    # -- flows -----------------------------------------------------------------------------------

    async def create(self, flow: Flow) -> None:
        """Add a new flow; ``store_conflict`` if its id or state digest is taken."""
        values = flow_values(flow, self._codec)

        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_CREATE_FLOW, values)
            except sqlite3.IntegrityError:
                raise StoreError(
                    f"flow {flow.id!r} already exists (its id or state is taken)",
                    code="store_conflict",
                    retryable=False,
                ) from None

        await self._worker.run(work)

    async def get(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None; ``store_corrupt`` naming it if it cannot be read."""

        def work(conn: sqlite3.Connection) -> Flow | None:
            row = conn.execute(_GET_FLOW, (flow_id,)).fetchone()
            return None if row is None else self._load_flow(row)

        return await self._worker.run(work)

    async def get_by_state(self, state_hash: str) -> Flow | None:
        """The flow whose ``state_hash`` this is, or None.

        The index is searched by the SHA-256 digest, never by the ``state``
        parameter itself, so its timing tells an attacker nothing useful; the
        record found is then compared with ``hmac.compare_digest``.
        """

        def work(conn: sqlite3.Connection) -> Flow | None:
            row = conn.execute(_GET_FLOW_BY_STATE, (state_hash,)).fetchone()
            return None if row is None else self._load_flow(row)

        return await self._worker.run(work)

    async def list_flows(self, *, spec: str | None = None, state: str | None = None) -> list[Flow]:
        """Flows, oldest first, filtered in SQL; unreadable ones are skipped with a warning."""
        query = _LIST_FLOWS[spec is not None, state is not None]
        params = [value for value in (spec, state) if value is not None]

        def work(conn: sqlite3.Connection) -> list[Flow]:
            return self._readable(conn.execute(query, params).fetchall(), self._load_flow)

        return await self._worker.run(work)

    async def compare_and_set(self, flow: Flow, expected_version: int) -> bool:
        """Replace the flow if its stored version is ``expected_version``; True if this call wrote.

        SQLite runs each write under the database's write lock, so of two racing
        writers (tasks, store objects or processes) exactly one finds the old version.
        First one conditional ``UPDATE`` of a row whose record holds no secret: a write
        over it supersedes none (every step of a flow after its exchange). When that
        matches nothing, the row is read and replaced in one ``BEGIN IMMEDIATE``
        transaction, and the WAL is emptied if the write superseded a secret the row
        held (``_rows.supersedes``).
        """
        # The old record is read only when the new one holds a secret too: only then may it be kept.
        read = _HELD_RECORD if holds_secret(flow) else _HELD
        values = flow_values(flow, self._codec)

        def work(conn: sqlite3.Connection) -> bool:
            try:
                if conn.execute(_UPDATE_CLEAN, (*values, expected_version)).rowcount == 1:
                    return True
                with immediate(conn):
                    row = conn.execute(read, (flow.id, expected_version)).fetchone()
                    if row is None:
                        return False
                    conn.execute(_UPDATE_FLOW, values)
            except sqlite3.IntegrityError:
                raise StoreError(
                    f"flow {flow.id!r} cannot take a state digest another flow has",
                    code="store_conflict",
                    retryable=False,
                ) from None
            if supersedes(row[0], row[1], flow, self._codec):
                self._forget()
            return True

        return await self._worker.run(work)

    async def delete(self, flow_id: str) -> bool:
        """Remove a flow; True if there was one."""

        def work(conn: sqlite3.Connection) -> bool:
            # fetchall: the statement ends (and commits) before the call returns.
            removed = conn.execute(
                "DELETE FROM flows WHERE id = ? RETURNING holds_secret", (flow_id,)
            ).fetchall()
            if any(held != 0 for (held,) in removed):  # NULL: written before the column, may hold one
                self._forget()
            return bool(removed)

        return await self._worker.run(work)

    async def purge(self, now: float) -> int:
        """Remove flows whose ``expires_at`` is before ``now``; how many went.

        Transition counts older than ``FlowCounts.KEPT`` go too. Leases that have run out
        (left by a worker that died holding one) go
        too; they are judged by the store's clock, as they were written.
        """

        def work(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                removed = conn.execute(
                    "DELETE FROM flows WHERE expires_at < ? RETURNING holds_secret", (now,)
                ).fetchall()
                conn.execute("DELETE FROM leases WHERE expires_at <= ?", (self._clock(),))
                conn.execute("DELETE FROM flow_steps WHERE hour < ?", (now - FlowCounts.KEPT,))
            if any(held != 0 for (held,) in removed):
                self._forget()
            return len(removed)

        return await self._worker.run(work)

    # -- tokens ----------------------------------------------------------------------------------

    async def put_token(self, token: Token) -> None:
        """Insert or replace the token under ``token.key``."""
        values = (token.key, token.provider, token.expires_at, self._codec.dump_token(token))
        health = _counts.token_health_columns(token)

        def work(conn: sqlite3.Connection) -> None:
            # An upsert, not INSERT OR REPLACE: a replacing delete would not run the count triggers.
            conn.execute(
                "INSERT INTO tokens (key, provider, expires_at, record, dead, refreshable, dead_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET provider = excluded.provider,"
                " expires_at = excluded.expires_at, record = excluded.record, dead = excluded.dead,"
                " refreshable = excluded.refreshable, dead_at = excluded.dead_at",
                (*values, *health),
            )
            self._forget()  # the token it replaced, refresh token included

        await self._worker.run(work)

    async def get_token(self, key: str) -> Token | None:
        """The token under ``key``, or None; ``store_corrupt`` naming it if it cannot be read."""

        def work(conn: sqlite3.Connection) -> Token | None:
            row = conn.execute("SELECT key, provider, record FROM tokens WHERE key = ?", (key,)).fetchone()
            return None if row is None else self._load_token(row)

        return await self._worker.run(work)

    async def list_tokens(
        self, *, provider: str | None = None, expiring_before: float | None = None
    ) -> list[Token]:
        """Tokens by key, filtered in SQL; unreadable ones are skipped with a warning.

        A token without ``expires_at`` (NULL) never matches ``expiring_before``:
        ``NULL < x`` is not true in SQL.
        """
        query = _LIST_TOKENS[provider is not None, expiring_before is not None]
        params = [value for value in (provider, expiring_before) if value is not None]

        def work(conn: sqlite3.Connection) -> list[Token]:
            return self._readable(conn.execute(query, params).fetchall(), self._load_token)

        return await self._worker.run(work)

    async def delete_token(self, key: str) -> bool:
        """Remove a token; True if there was one."""

        def work(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute("DELETE FROM tokens WHERE key = ?", (key,)).rowcount == 1
            if deleted:
                self._forget()
            return deleted

        return await self._worker.run(work)

    # -- counts ----------------------------------------------------------------------------------

    async def flow_counts(self, *, since: float, spec: str | None = None) -> FlowCounts:
        """Flows per spec and state now, and transitions per hour from ``since``'s hour on.

        Read from the tables the triggers keep (``_counts``): no flow is read.
        """
        since_hour = hour_of(since)
        return await self._worker.run(lambda conn: _counts.flow_counts(conn, since_hour, spec))

    async def token_counts(
        self, *, now: float, within: float, provider: str | None = None, limit: int = 20
    ) -> TokenCounts:
        """Tokens per provider by health at ``now``; up to ``limit`` per provider needing attention.

        Tokens stored before counting began are classified first (once; see ``_counts``).
        """
        check_token_query(now, within, limit)

        def work(conn: sqlite3.Connection) -> TokenCounts:
            for key in _counts.classify_tokens(conn, self._codec):
                log.warning(
                    "the SQLite store %s cannot count token %r: its record is unreadable", self.path, key
                )
            return _counts.token_counts(conn, self._readable_tokens, (now, within, provider, limit))

        return await self._worker.run(work)

    # -- leases ----------------------------------------------------------------------------------

    async def acquire(self, key: str, ttl: float) -> Lease | None:
        """Take the lease ``key`` for ``ttl`` seconds, or None while a live one is held.

        Read and write happen in one ``BEGIN IMMEDIATE`` transaction, so two
        processes cannot both see the lease free. Expiry is on the store's
        clock (``time.time()`` by default), the one clock every process on the
        host shares and that still means something after a reboot.

        If the caller is cancelled while the worker is taking the lease, the
        lease is given back at once rather than left blocking others for ``ttl``.
        """
        _check_ttl(ttl)
        owner = secrets.token_urlsafe(16)

        def work(conn: sqlite3.Connection) -> Lease | None:
            with immediate(conn):
                now = self._clock()  # read under the lock: waiting for it must not age the lease
                row = conn.execute("SELECT expires_at FROM leases WHERE key = ?", (key,)).fetchone()
                if row is not None and row[0] > now:
                    return None
                expires_at = now + ttl
                conn.execute(
                    "INSERT OR REPLACE INTO leases (key, owner, expires_at) VALUES (?, ?, ?)",
                    (key, owner, expires_at),
                )
            return Lease(key, owner, expires_at)

        try:
            return await self._worker.run(work)
        except asyncio.CancelledError:
            # The worker may still take it. The one worker runs jobs in order, so a release
            # queued now runs after the take, and matches nothing if the take never happened.
            self._worker.run_later(lambda conn: self._delete_lease(conn, key, owner))
            raise

    async def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend the lease to ``ttl`` seconds from now, if it is still ours and live; else None.

        One conditional ``UPDATE`` under SQLite's write lock: a lease that
        expired, or was released or taken since, matches no row.
        """
        _check_ttl(ttl)

        def work(conn: sqlite3.Connection) -> Lease | None:
            with immediate(conn):
                now = self._clock()
                renewed = conn.execute(
                    "UPDATE leases SET expires_at = ? WHERE key = ? AND owner = ? AND expires_at > ?",
                    (now + ttl, lease.key, lease.token, now),
                ).rowcount
            return Lease(lease.key, lease.token, now + ttl) if renewed == 1 else None

        return await self._worker.run(work)

    async def release(self, lease: Lease) -> None:
        """Give a lease back; a no-op when it expired and another owner has it now."""
        await self._worker.run(lambda conn: self._delete_lease(conn, lease.key, lease.token))

    @staticmethod
    def _delete_lease(conn: sqlite3.Connection, key: str, owner: str) -> None:
        conn.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, owner))

    # -- closing ---------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the file once the calls already made are done; calling it again does nothing."""
        await self._worker.close()
