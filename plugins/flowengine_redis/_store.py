"""The Redis store: flows, tokens and leases shared by every worker that reaches one server.

Key layout under the URL's ``prefix`` (``flowengine:`` by default):

- ``flow:{id}``: hash of the clear fields (id, spec, state, state_hash, version,
  created_at, expires_at) and ``blob``, the whole record from ``RecordCodec.dump_flow``;
- ``state:{state_hash}``: the id of the flow with that state digest;
- ``flows``: sorted set of flow ids by created_at (listing, oldest first);
- ``expiry``: sorted set of flow ids by expires_at (purge);
- ``token:{key}``: hash of provider, expires_at and ``blob`` (``RecordCodec.dump_token``);
- ``tokens`` and ``tokens:{provider}``: sorted sets of token keys by expires_at (+inf: never);
- ``lease:{key}``: the owner's random token, with Redis's own expiry;
- the counts of the operator's view: ``in:{spec}:{state}``, ``states``, ``steps:{hour}``,
  ``step_hours``, ``health:{provider}:r|n|dead`` and ``providers`` (see ``_counts``).

A flow and its state key expire natively at ``max(expires_at, now) + retention``,
so abandoned flows never pile up, while an expired one stays readable long
enough for the engine to answer ``flow_expired`` rather than ``state_unknown``.
``purge`` removes expired flows before that, and keeps the indexes clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Sequence
from typing import Any

from flowengine import (
    Flow,
    FlowCounts,
    Lease,
    RecordCodec,
    StoreError,
    Token,
    TokenCounts,
    check_token_query,
    step_of,
)

from flowengine_redis import _counts
from flowengine_redis._connection import Connection, driver_errors
from flowengine_redis._replies import CHUNK, chunks, expiry_ms, lease_ms, readable_tokens, server_time, text
from flowengine_redis._url import RedisOptions

__all__ = ["RedisStore"]

log = logging.getLogger("flowengine.store")


class RedisStore:
    """A Store in Redis, for many workers and processes (``redis://host:port/db?prefix=...``).

    Connections open on first use, so ``open_store(url)`` is cheap in any
    context, and close with ``aclose()``. A redis.asyncio pool belongs to the
    event loop it first ran on, so each store has its own pool, and a store
    used from another loop later (``asyncio.run`` twice) makes a new one.
    Every driver failure becomes ``StoreError`` (``store_unavailable``) naming
    the server's address, never its password.
    """

    def __init__(self, options: RedisOptions, codec: RecordCodec) -> None:
        self.options = options
        self.codec = codec
        self._connection: Connection | None = None
        prefix = options.prefix
        self._flows_key = f"{prefix}flows"
        self._expiry_key = f"{prefix}expiry"
        self._tokens_key = f"{prefix}tokens"
        self._counted = _counts.CountKeys(prefix)

    def __repr__(self) -> str:
        return f"RedisStore({self.options.address!r}, prefix={self.options.prefix!r})"

    # Keys -------------------------------------------------------------------------------------

    def _flow_key(self, flow_id: str) -> str:
        return f"{self.options.prefix}flow:{flow_id}"

    def _state_key(self, state_hash: str) -> str:
        return f"{self.options.prefix}state:{state_hash}"

    def _token_key(self, key: str) -> str:
        return f"{self.options.prefix}token:{key}"

    def _provider_key(self, provider: str) -> str:
        return f"{self.options.prefix}tokens:{provider}"

    def _lease_key(self, key: str) -> str:
        return f"{self.options.prefix}lease:{key}"

    # Plumbing ---------------------------------------------------------------------------------

    def _conn(self) -> Connection:
        connection = self._connection
        if connection is None or connection.loop is not asyncio.get_running_loop():
            # A pool made in another (likely finished) loop cannot be used or closed from
            # this one: leave it to the garbage collector and start afresh.
            connection = self._connection = Connection(self.options)
        return connection

    def _driver_errors(self) -> contextlib.AbstractContextManager[None]:
        return driver_errors(self.options)

    # Flows ------------------------------------------------------------------------------------

    async def create(self, flow: Flow) -> None:
        """Add a new flow in one atomic step; ``store_conflict`` if its id or state digest is taken."""
        name = _counts.state_name(flow.spec, flow.state)
        step_keys, step_args = _counts.step_args(self._counted, flow)
        with self._driver_errors():
            conn = self._conn()
            written = await conn.create(
                keys=[
                    self._flow_key(flow.id),
                    self._state_key(flow.state_hash),
                    self._flows_key,
                    self._expiry_key,
                    self._counted.in_state(name),
                    self._counted.states,
                    *step_keys,
                ],
                args=[
                    flow.id,
                    flow.spec,
                    flow.state,
                    flow.state_hash,
                    flow.version,
                    repr(flow.created_at),
                    repr(flow.expires_at),
                    self.codec.dump_flow(flow),
                    expiry_ms(flow.expires_at, time.time(), self.options.retention),
                    name,
                    *step_args,
                ],
            )
        if written == 0:
            raise StoreError(f"flow {flow.id!r} already exists", code="store_conflict", retryable=False)
        if written == -1:
            raise StoreError(
                f"another flow already has the state of flow {flow.id!r}",
                code="store_conflict",
                retryable=False,
            )

    async def get(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None (an expired flow is gone once its retention passed)."""
        with self._driver_errors():
            blob = await self._conn().redis.hget(self._flow_key(flow_id), "blob")
        return None if blob is None else self.codec.load_flow(blob, flow_id)

    async def get_by_state(self, state_hash: str) -> Flow | None:
        """The flow whose ``state_hash`` this is, or None."""
        with self._driver_errors():
            redis = self._conn().redis
            flow_id = await redis.get(self._state_key(state_hash))
            if flow_id is None:
                return None
            name = text(flow_id)
            blob = await redis.hget(self._flow_key(name), "blob")
        if blob is None:
            return None
        flow = self.codec.load_flow(blob, name)
        # The state key names the flow; the record itself must agree before anyone acts on it.
        return flow if hmac.compare_digest(flow.state_hash.encode(), state_hash.encode()) else None

    async def list_flows(self, *, spec: str | None = None, state: str | None = None) -> list[Flow]:
        """Flows, oldest first, optionally one spec's or one state's.

        Redis filters on the clear fields, so only matching records are sent and
        decoded. A damaged record is skipped with a warning naming it; ids whose
        flow Redis already dropped are pruned from the indexes.
        """
        filters = [
            "1" if spec is not None else "0",
            spec or "",
            "1" if state is not None else "0",
            state or "",
        ]
        with self._driver_errors():
            conn = self._conn()
            ids = [text(raw) for raw in await conn.redis.zrange(self._flows_key, 0, -1)]
            if not ids:
                return []
            # One chunk runs as a plain EVALSHA; a pipeline first asks SCRIPT EXISTS, one trip more.
            pipe = conn.redis.pipeline(transaction=False) if len(ids) > CHUNK else None
            replies: list[list[Any]] = []
            for chunk in chunks(ids):
                reply = await conn.read_flows(
                    keys=[self._flows_key, self._expiry_key, *(self._flow_key(i) for i in chunk)],
                    args=[*filters, *chunk],
                    client=pipe,
                )
                if pipe is None:
                    replies.append(reply)
            if pipe is not None:
                replies = await pipe.execute()
        flows: list[Flow] = []
        for flow_id, reply in zip(ids, (r for chunk in replies for r in chunk), strict=True):
            if reply == 2:
                log.warning("skipping flow %r in the Redis store at %s: no record", flow_id, self._where)
            elif isinstance(reply, bytes):
                try:
                    flows.append(self.codec.load_flow(reply, flow_id))
                except StoreError as exc:
                    if exc.code == "store_key_missing":
                        raise  # not one damaged record: without the key no sealed record can be read
                    log.warning("skipping flow %r in the Redis store at %s: %s", flow_id, self._where, exc)
        return flows

    async def compare_and_set(self, flow: Flow, expected_version: int) -> bool:
        """Replace the flow if its stored version is ``expected_version``, in one atomic script.

        The script also moves the flow between the state sets the counts read: it
        needs the stored state's set named in its keys, which is the source of the
        transition being written; for a record written without one (by hand) the
        state is read first, and a script that finds another state writes nothing
        and is run again with the one it found.
        """
        step = step_of(flow)
        old_state = step.source if step is not None and step.source else None
        name = _counts.state_name(flow.spec, flow.state)
        step_keys, step_args = _counts.step_args(self._counted, flow)
        blob = self.codec.dump_flow(flow)
        with self._driver_errors():
            conn = self._conn()
            for _ in range(3):
                if old_state is None:
                    raw = await conn.redis.hget(self._flow_key(flow.id), "state")
                    if raw is None:
                        return False
                    old_state = text(raw)
                written = await conn.cas(
                    keys=[
                        self._flow_key(flow.id),
                        self._state_key(flow.state_hash),
                        self._expiry_key,
                        self._counted.in_state(_counts.state_name(flow.spec, old_state)),
                        self._counted.in_state(name),
                        self._counted.states,
                        *step_keys,
                    ],
                    args=[
                        str(expected_version),
                        flow.id,
                        flow.spec,
                        flow.state,
                        flow.version,
                        repr(flow.expires_at),
                        blob,
                        expiry_ms(flow.expires_at, time.time(), self.options.retention),
                        old_state,
                        name,
                        *step_args,
                    ],
                )
                if written != -1:
                    return bool(written == 1)
                old_state = None  # not the state it was believed to be in: read it, try again
        return False

    async def delete(self, flow_id: str) -> bool:
        """Remove a flow, its state key and its index entries; True if there was one."""
        with self._driver_errors():
            removed = await self._delete_flows([flow_id], now=None)
        return removed == 1

    async def purge(self, now: float) -> int:
        """Remove flows whose ``expires_at`` is before ``now``; how many this call removed.

        Transition counts older than ``FlowCounts.KEPT`` go too (Redis would drop them by
        itself a little later). Each flow is re-checked inside the delete script, so a flow whose expiry a
        compare-and-set moved after it was listed stays. Workers purging at once
        count each flow once.
        """
        with self._driver_errors():
            redis = self._conn().redis
            raw = await redis.zrangebyscore(self._expiry_key, "-inf", f"({now!r}")
            removed = await self._delete_flows([text(r) for r in raw], now=now)
            await _counts.drop_old_steps(redis, self._counted, now)
            return removed

    async def _delete_flows(self, flow_ids: Sequence[str], *, now: float | None) -> int:
        """Delete these flows (those still expiring before ``now``, when given); how many went."""
        if not flow_ids:
            return 0
        conn = self._conn()
        pipe = conn.redis.pipeline(transaction=False)
        for flow_id in flow_ids:
            pipe.hmget(self._flow_key(flow_id), ["state_hash", "spec", "state"])
        found: list[list[bytes | None]] = await pipe.execute()
        state_hashes = [fields[0] for fields in found]
        pipe = conn.redis.pipeline(transaction=False)
        for flow_id, (state_hash, spec, state) in zip(flow_ids, found, strict=True):
            if state_hash is None:  # already gone: only its index entries are left to drop
                pipe.zrem(self._flows_key, flow_id)
                pipe.zrem(self._expiry_key, flow_id)
                continue
            keys = [
                self._flow_key(flow_id),
                self._state_key(text(state_hash)),
                self._flows_key,
                self._expiry_key,
                self._counted.in_state(_counts.state_name(text(spec), text(state))),
            ]
            args = [flow_id] if now is None else [flow_id, repr(now)]
            await conn.delete_flow(keys=keys, args=args, client=pipe)
        results = iter(await pipe.execute())
        removed = 0
        for state_hash in state_hashes:
            if state_hash is None:
                next(results), next(results)  # the two ZREMs
            else:
                removed += int(next(results))
        return removed

    # Tokens -----------------------------------------------------------------------------------

    async def put_token(self, token: Token) -> None:
        """Insert or replace the token, its index entries and its health set, in one script."""
        with self._driver_errors():
            await self._put_token(token, self.codec.dump_token(token), counted=True)

    async def _put_token(self, token: Token, blob: bytes, *, counted: bool) -> int:
        """Run PUT_TOKEN; ``counted=False`` only files a stored token (``blob``) in its health set."""
        which, health_score = _counts.health_args(token)
        score = math.inf if token.expires_at is None else token.expires_at
        written: int = await self._conn().put_token(
            keys=[
                self._token_key(token.key),
                self._tokens_key,
                self._provider_key(token.provider),
                *self._counted.health(token.provider),
                self._counted.providers,
            ],
            args=[
                token.key,
                token.provider,
                "" if token.expires_at is None else repr(token.expires_at),
                blob,
                repr(score),
                which,
                repr(health_score),
                "1" if counted else "0",
            ],
        )
        return written

    async def get_token(self, key: str) -> Token | None:
        """The token under ``key``, or None."""
        with self._driver_errors():
            blob = await self._conn().redis.hget(self._token_key(key), "blob")
        return None if blob is None else self.codec.load_token(blob, key)

    async def list_tokens(
        self, *, provider: str | None = None, expiring_before: float | None = None
    ) -> list[Token]:
        """Tokens by expiry (never-expiring last), optionally one provider's or those expiring before a time.

        The sorted sets do the filtering; only the tokens they return are read
        and decoded. A damaged token is skipped with a warning naming it.
        """
        index = self._tokens_key if provider is None else self._provider_key(provider)
        with self._driver_errors():
            redis = self._conn().redis
            if expiring_before is None:
                raw = await redis.zrange(index, 0, -1)
            else:
                raw = await redis.zrangebyscore(index, "-inf", f"({expiring_before!r}")
            keys = [text(r) for r in raw]
            if not keys:
                return []
            pipe = redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._token_key(key), ["provider", "blob"])
            rows: list[list[bytes | None]] = await pipe.execute()
        tokens: list[Token] = []
        for key, (stored_provider, blob) in zip(keys, rows, strict=True):
            if blob is None or (provider is not None and stored_provider != provider.encode()):
                continue  # deleted since the index was read
            try:
                tokens.append(self.codec.load_token(blob, key))
            except StoreError as exc:
                if exc.code == "store_key_missing":
                    raise  # not one damaged record: without the key no sealed record can be read
                log.warning("skipping token %r in the Redis store at %s: %s", key, self._where, exc)
        return tokens

    async def delete_token(self, key: str) -> bool:
        """Remove a token and its index entries; True if there was one."""
        with self._driver_errors():
            redis = self._conn().redis
            provider = await redis.hget(self._token_key(key), "provider")
            pipe = redis.pipeline(transaction=True)
            pipe.delete(self._token_key(key))
            pipe.zrem(self._tokens_key, key)
            if provider is not None:
                pipe.zrem(self._provider_key(text(provider)), key)
                for health in self._counted.health(text(provider)):
                    pipe.zrem(health, key)
            results: list[Any] = await pipe.execute()
        return bool(results[0])

    # Counts -----------------------------------------------------------------------------------

    async def flow_counts(self, *, since: float, spec: str | None = None) -> FlowCounts:
        """Flows per spec and state now, and transitions per hour from ``since``'s hour on (``_counts``)."""
        with self._driver_errors():
            return await _counts.flow_counts(self._conn().redis, self._counted, since, spec)

    async def token_counts(
        self, *, now: float, within: float, provider: str | None = None, limit: int = 20
    ) -> TokenCounts:
        """Tokens per provider by health at ``now``; up to ``limit`` per provider needing attention.

        Tokens a flowengine stored before counting began are filed first (each once).
        """
        check_token_query(now, within, limit)
        with self._driver_errors():
            redis = self._conn().redis
            for name in map(text, await redis.smembers(self._counted.providers)):
                await self._classify(await _counts.unclassified(redis, self._counted, name))
            return await _counts.token_counts(
                redis, self._counted, (now, within, provider, limit), self._tokens
            )

    async def _classify(self, keys: Sequence[str]) -> None:
        rows = await self._token_rows(keys)
        for token, blob in readable_tokens(self.codec, keys, rows, self._where, "cannot count"):
            await self._put_token(token, blob, counted=False)

    async def _token_rows(self, keys: Sequence[str]) -> list[list[bytes | None]]:
        pipe = self._conn().redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._token_key(key), ["provider", "blob"])
        rows: list[list[bytes | None]] = await pipe.execute()
        return rows

    async def _tokens(self, keys: Sequence[str]) -> list[Token]:
        """The readable tokens under ``keys`` (damaged ones skipped with a warning)."""
        rows = await self._token_rows(keys)
        return [token for token, _ in readable_tokens(self.codec, keys, rows, self._where, "skipping")]

    # Leases -----------------------------------------------------------------------------------

    async def acquire(self, key: str, ttl: float) -> Lease | None:
        """Take the lease ``key`` for ``ttl`` seconds (``SET NX PX``), or None while another holds it.

        Redis expires the lease itself, so a worker that dies holding it blocks
        the others for at most ``ttl``. ``expires_at`` is on the Redis server's clock.
        """
        token, ttl_ms = secrets.token_urlsafe(16), lease_ms(ttl)
        with self._driver_errors():
            taken = await self._conn().acquire(keys=[self._lease_key(key)], args=[token, ttl_ms])
        return Lease(key, token, server_time(taken) + ttl) if taken else None

    async def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend the lease to ``ttl`` seconds from now while this owner holds it; else None."""
        ttl_ms = lease_ms(ttl)
        with self._driver_errors():
            renewed = await self._conn().renew(keys=[self._lease_key(lease.key)], args=[lease.token, ttl_ms])
        return Lease(lease.key, lease.token, server_time(renewed) + ttl) if renewed else None

    async def release(self, lease: Lease) -> None:
        """Give the lease back, unless it expired and another owner took it since.

        Tried twice: releasing is idempotent (a script deletes the key only for
        its owner), and the first try after an outage may meet a pooled
        connection the outage killed.
        """
        for attempt in range(2):
            try:
                with self._driver_errors():
                    await self._conn().release(keys=[self._lease_key(lease.key)], args=[lease.token])
                return
            except StoreError:
                if attempt == 1:
                    raise

    async def aclose(self) -> None:
        """Close this store's connection pool; the next call would open a new one."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if connection.loop is running:
            with self._driver_errors():
                await connection.redis.aclose()

    @property
    def _where(self) -> str:
        return f"{self.options.address} (prefix {self.options.prefix!r})"
