"""The driver's token operations: refresh, grant and revoke, with single-flight, leases and retries.

Tokens have no flow and no machine: the core builds their requests and reads
their answers (``FlowCore.token_request``/``read_token``); this part of the
driver decides who sends (one caller per process, one worker across processes
through a store lease), retries what is safe to retry, and keeps what the
provider answered until the store takes it (``Saver``, SECURITY.md 23).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from flowengine._arguments import refuse_bad_text
from flowengine._bounded import carried
from flowengine._clock import Clock
from flowengine._core import FlowCore
from flowengine._errors import (
    ConfigError,
    ErrorCode,
    FlowStateError,
    InvalidGrantError,
    ProviderError,
    TransportError,
    TransportTimeoutError,
)
from flowengine._http import HttpRequest, HttpResponse, Transport, TransportConfig
from flowengine._oidc_driver import new_assertion_id
from flowengine._records import AccountRef, Token, evolve
from flowengine._reporting import RequestTimer
from flowengine._retry import RetryPolicy
from flowengine._saving import Saver, store_call
from flowengine._spec import FlowSpec
from flowengine._store import Lease, Store
from flowengine._tokens import read_revocation_response

__all__ = ["Attempt", "TokenOperations"]

log = logging.getLogger("flowengine")
_T = TypeVar("_T")


#: One attempt's request and every secret it carries (SECURITY.md 28).
Attempt = tuple[HttpRequest, tuple[str, ...]]


def _dead(key: str) -> InvalidGrantError:
    return InvalidGrantError(
        f"the grant behind {key} is dead; a new authorization is needed", code=ErrorCode.INVALID_GRANT
    )


class TokenOperations:
    """Refresh, grant and revoke for ``AsyncEngine`` (which provides the attributes below)."""

    spec: FlowSpec
    core: FlowCore
    store: Store
    clock: Clock
    retry: RetryPolicy
    lease_ttl: float
    transport_config: TransportConfig
    _saver: Saver
    _pm: pluggy.PluginManager | None

    @property
    def transport(self) -> Transport:  # pragma: no cover - AsyncEngine defines it
        raise NotImplementedError

    if TYPE_CHECKING:

        async def core_for(self, connection: Mapping[str, str] | None) -> FlowCore: ...

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    async def grant(
        self,
        grant: str,
        inputs: Mapping[str, str] | None = None,
        *,
        subject: str | None = None,
        connection: Mapping[str, str] | None = None,
        scope: str | None = None,
    ) -> Token:
        """Run a non-interactive grant (client credentials, Podio's ``app`` or ``password``); store its token.

        ``inputs`` gives the spec's declared inputs (``app_id``, ``app_token``, …),
        ``connection`` its connection variables, ``scope`` the ``{scope}`` (else the
        spec's default scopes). Safe to retry, so connection errors, 5xx and rate
        limits are retried with backoff per ``retry``. Not for ``authorization_code``
        (use start/callback). ``subject`` files the token under that name when the
        answer names no account.
        """
        if grant == "authorization_code":
            raise ConfigError("the authorization_code grant needs a person: use start() and callback()")
        refuse_bad_text(subject=subject, scope=scope)
        if self.spec.device is not None and grant == self.spec.device.grant:
            raise ConfigError("the device grant needs a person: use start_device() and poll_device()")
        values = self.core.connection(connection)
        core = await self.core_for(values)
        scope = scope or core.default_scope()
        filled = {**self.declared_inputs(inputs), **values, "scope": scope}
        default = None if subject is None else AccountRef("subject", subject)
        token = await self.send_attempts(
            lambda: core.token_request(grant, filled, now=self.clock(), assertion_id=new_assertion_id()),
            "grant",
            lambda r, sent: core.read_token(
                r,
                self.clock(),
                grant=grant,
                sent=sent,
                default_account=default,
                connection=values,
                requested_scope=scope,
            ),
        )
        ask = core.account_request(token)
        if ask is not None:
            response = await self.send_with_retry(ask.request, "userinfo", ask.sent_secrets, lambda r: r)
            token = core.with_account(token, response, token.account)
        await self._saver.save_token(token)
        return token

    def declared_inputs(self, inputs: Mapping[str, str] | None) -> dict[str, str]:
        """``inputs``, after checking the spec declares each of them."""
        if not inputs:
            return {}
        refuse_bad_text(inputs=inputs)
        undeclared = set(inputs or ()) - set(self.spec.inputs)
        if undeclared:
            raise ConfigError(f"spec {self.spec.name!r} declares no input(s) {sorted(undeclared)}")
        return dict(inputs or {})

    async def refresh(self, token: Token | str) -> Token:
        """Refresh a token (a Token or its store key); concurrent callers share one request.

        When another worker already refreshed it, the stored token is returned
        without a request. ``invalid_grant`` with an unchanged stored refresh
        token marks the grant dead and raises (SECURITY.md 18). A token this
        process holds unsaved is the current one: the refresh token it replaced
        is spent and is never sent (SECURITY.md 23).
        """
        if not isinstance(token, str | Token):
            raise ConfigError(f"refresh() takes a Token or its key, not {type(token).__name__}")
        key = token if isinstance(token, str) else token.key
        if not carried(key):
            raise FlowStateError(f"no token {key!r} in the store", code=ErrorCode.TOKEN_UNKNOWN)
        seen = None if isinstance(token, str) else token
        asked_at = self.clock()
        return await self.single_flight(f"refresh:{key}", lambda: self._refresh_once(key, seen, asked_at))

    @staticmethod
    def _refreshed_since(current: Token, seen: Token | None, asked_at: float) -> bool:
        """True when ``current`` is newer than what the caller had when it asked."""
        if seen is not None:  # the caller named the token it holds: is the stored one another?
            return current.access_token != seen.access_token
        return current.obtained_at >= asked_at  # asked by key: obtained since the call began

    async def _refresh_once(self, key: str, seen: Token | None, asked_at: float) -> Token:
        kept = self._saver.unsaved(key)
        if kept is not None:
            return kept  # refreshed here, not yet stored: its predecessor is spent
        lease = await store_call(self.store.acquire(f"refresh:{key}", self.lease_ttl))
        if lease is None:
            return await self._wait_for_refresh(key, seen, asked_at)
        try:
            current = await store_call(self.store.get_token(key)) or seen
            if current is None:
                raise FlowStateError(f"no token {key!r} in the store", code=ErrorCode.TOKEN_UNKNOWN)
            if current.dead:
                raise _dead(key)
            if self._refreshed_since(current, seen, asked_at):
                return current  # another caller or worker refreshed it while we waited
            async with self.holding(lease):
                return await self._refresh_at_provider(current)
        finally:
            await self.release(lease)

    async def _refresh_at_provider(self, current: Token) -> Token:
        if not current.refresh_token:
            raise FlowStateError("this token has no refresh token", code=ErrorCode.NO_REFRESH_TOKEN)
        core = await self.core_for(current.connection)
        core.check_token_endpoint(current)
        values = {**current.connection, **current.kept, "refresh_token": current.refresh_token}
        try:
            fresh = await self.send_attempts(
                lambda: core.token_request(
                    "refresh_token",
                    values,
                    now=self.clock(),
                    assertion_id=new_assertion_id() if core.signs_assertions else None,
                ),
                "refresh",
                lambda r, sent: core.read_token(
                    r,
                    self.clock(),
                    grant="refresh_token",
                    sent=sent,
                    connection=current.connection,
                    kept=current.kept,
                    requested_scope=current.scope,
                    refreshing=current,
                ),
            )
        except InvalidGrantError:
            again = await store_call(self.store.get_token(current.key))
            if again is not None and again.refresh_token != current.refresh_token:
                return again  # rotated by another worker meanwhile: ours was the spent one
            await self._saver.save_token(evolve(current, dead=True, dead_at=self.clock()))
            raise
        await self._saver.save_token(fresh)
        return fresh

    async def _wait_for_refresh(self, key: str, seen: Token | None, asked_at: float) -> Token:
        deadline = self.clock() + self.lease_ttl + 5
        delay = 0.01
        while self.clock() < deadline:
            await self.clock.sleep(delay)
            delay = min(delay * 2, 0.25)
            current = await store_call(self.store.get_token(key))
            if current is not None and self._refreshed_since(current, seen, asked_at):
                if current.dead:
                    raise _dead(key)
                return current
            lease = await store_call(self.store.acquire(f"refresh:{key}", 0.001))
            if lease is not None:  # the other worker gave up without refreshing
                await self.release(lease)
                break
        return await self._refresh_once(key, seen, asked_at)

    async def revoke(self, token: Token | str, *, hint: str | None = None) -> None:
        """Revoke a token at the provider (RFC 7009) and delete it from the store.

        Sends the refresh token when there is one (revoking it ends the grant),
        else the access token; ``hint`` ("access_token" or "refresh_token")
        chooses. Retried with backoff like a refresh (SECURITY.md 19): revoking
        twice is harmless. ``ConfigError`` when the spec has no ``revocation``.
        """
        rule = self.spec.revocation
        if rule is None:
            raise ConfigError(
                f"spec {self.spec.name!r} names no revocation endpoint", code=ErrorCode.REVOCATION_UNSUPPORTED
            )
        if not isinstance(token, str | Token):
            raise ConfigError(f"revoke() takes a Token or its key, not {type(token).__name__}")
        current = await self.get_token(token) if isinstance(token, str) else token
        if current is None:
            raise FlowStateError(f"no token {token!r} in the store", code=ErrorCode.TOKEN_UNKNOWN)
        if hint is None:
            hint = "refresh_token" if current.refresh_token else "access_token"
        if hint not in ("access_token", "refresh_token"):
            raise ConfigError(f"hint must be access_token or refresh_token, not {hint!r}")
        core = await self.core_for(current.connection)
        core.check_token_endpoint(current)
        value = current.refresh_token if hint == "refresh_token" else current.access_token
        if not value:
            code = ErrorCode.NO_REFRESH_TOKEN if hint == "refresh_token" else ErrorCode.NO_ACCESS_TOKEN
            raise FlowStateError(f"this token has no {hint}", code=code)
        values = {**current.connection, **current.kept, "token": value, "token_type_hint": hint}
        url = core.endpoint_url(rule.endpoint, core.client_values(values))
        # ``sent``: every secret the attempt carried, scrubbed from what comes back.
        await self.send_attempts(
            lambda: core.authenticated_request(rule, url, values, self.clock(), new_assertion_id()),
            "revocation",
            lambda r, sent: read_revocation_response(self.spec, r, now=self.clock(), sent=sent),
        )
        if hint == "access_token" and current.refresh_token:
            # The refresh token still works at the provider: keep it, so it can be used or revoked.
            stored = await store_call(self.store.get_token(current.key))
            if stored is not None:
                await self._saver.save_token(evolve(stored, expires_at=self.clock()))
            return
        await self._saver.delete_token(current.key)

    async def get_token(self, key: str) -> Token | None:
        """The current token under ``key`` (``provider:type:id``): kept unsaved here, else stored."""
        if not carried(key):
            return None
        return self._saver.unsaved(key) or await store_call(self.store.get_token(key))

    async def tokens(self) -> list[Token]:
        """Every stored token of this engine's provider."""
        return await store_call(self.store.list_tokens(provider=self.spec.name))

    @property
    def unsaved_tokens(self) -> list[Token]:
        """Tokens this process holds because the store has not taken them yet (SECURITY.md 23)."""
        return self._saver.unsaved_tokens

    # --- sending ----------------------------------------------------------------------

    async def send_once(self, request: HttpRequest) -> HttpResponse:
        """Send a request that must not be repeated (a code exchange)."""
        return await self.transport.send(request)

    def time_request(self, purpose: str, request: HttpRequest, attempt: int, **ids: str) -> RequestTimer:
        """Start timing an attempt, to report it to ``flowengine_request`` observers when it ends."""
        return RequestTimer(self.spec.name, purpose, request, attempt, self._pm, **ids)

    async def send_with_retry(
        self,
        request: HttpRequest,
        what: str,
        sent_secrets: tuple[str, ...],
        read: Callable[[HttpResponse], _T],
    ) -> _T:
        """``send_attempts`` for a request that is the same at every attempt: no client assertion in it.

        A request that authenticates the client builds a new assertion for each attempt
        (``send_attempts``): a discovery, key set or userinfo request does not.
        """
        return await self.send_attempts(lambda: (request, sent_secrets), what, lambda r, _sent: read(r))

    async def send_attempts(
        self,
        build: Callable[[], Attempt],
        what: str,
        read: Callable[[HttpResponse, tuple[str, ...]], _T],
    ) -> _T:
        """Send and read a request that is safe to repeat, retrying what is retryable with backoff.

        ``build`` makes each attempt's request and the secrets it carries afresh: a signed
        client assertion gets a new ``jti``, ``iat`` and ``exp`` every time, so a retry is
        never a replay nor sent expired (RFC 7523 §3, SECURITY.md 37), and ``read`` scrubs
        what comes back of that attempt's secrets. ``what`` (``refresh``, ``grant``,
        ``revocation``) names it in logs and request events.
        """
        deadline = self.clock() + self.transport_config.operation_deadline
        sent = False  # whether any attempt may have reached the server
        for attempt in range(self.retry.attempts):
            request, sent_secrets = build()
            timer = self.time_request(what, request, attempt + 1)
            status = None
            try:
                response = await self._within(deadline, what, self.transport.send(request))
                status = response.status
                result = read(response, sent_secrets)
            except (ProviderError, TransportError) as exc:
                sent = sent or not isinstance(exc, TransportError) or exc.sent
                delay = self._retry_delay(exc, attempt)
                timer.done(status=status, error=exc.code, retry_in=delay)
                if delay is None:
                    raise
                if self.clock() + delay >= deadline:
                    raise self._past_deadline(what, sent) from exc
                log.info("%s: %s; retrying in %.2fs", what, exc.code, delay)
                await self.clock.sleep(delay)
            else:
                timer.done(status=status, error=None)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _within(self, deadline: float, what: str, sending: Awaitable[HttpResponse]) -> HttpResponse:
        """``sending``, cut off when the operation's deadline passes (SECURITY.md 24)."""
        try:
            async with asyncio.timeout(max(deadline - self.clock(), 0.0)):
                return await sending
        except TimeoutError:
            raise self._past_deadline(what, True) from None

    def _past_deadline(self, what: str, sent: bool) -> TransportTimeoutError:
        limit = self.transport_config.operation_deadline
        return TransportTimeoutError(
            f"{what} did not succeed within its {limit:g} s deadline (TransportConfig.operation_deadline)",
            sent=sent,
        )

    def _retry_delay(self, exc: ProviderError | TransportError, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None when this error must not be retried."""
        retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
        if not exc.retryable or attempt + 1 >= self.retry.attempts:
            return None
        if retry_after is not None and retry_after > self.retry.max_delay:
            return None  # the provider said when; retrying sooner is what it asked us not to do
        return self.retry.delay(attempt, retry_after)

    async def single_flight(self, key: str, work: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``work`` once for concurrent callers of this engine with the same key."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(work())
            self._inflight[key] = future
            future.add_done_callback(lambda _f: self._inflight.pop(key, None))
        result: _T = await asyncio.shield(future)
        return result

    def holding(self, lease: Lease) -> _Heartbeat:
        """``async with``: keep ``lease`` alive while a provider request runs, renewed every third of its ttl.

        Leases are short (``lease_ttl``), so one left by a worker that died stops
        blocking the others within seconds; a live holder renews it. The heartbeat
        waits in real time (the store's clock decides when a lease runs out, not an
        engine's injected one); it is a timer until its first beat, so a request that
        ends sooner (most do) costs no task. A store that is away cannot renew: the
        lease runs out on its own, and the answer is kept until the store returns
        (SECURITY.md 23).
        """
        return _Heartbeat(lambda: self._renew_every(lease), self.lease_ttl / 3)

    async def _renew_every(self, lease: Lease) -> None:
        """Renew ``lease`` now, then every third of its ttl, until it is lost or this is cancelled."""
        current = lease
        while True:
            try:
                renewed = await self.store.renew(current, self.lease_ttl)
            except Exception as exc:  # the store is away: nothing to do but try again
                log.info("could not renew lease %s (%s); trying again", lease.key, type(exc).__name__)
            else:
                if renewed is None:
                    log.warning("lease %s was lost while its request ran", lease.key)
                    return
                current = renewed
            await asyncio.sleep(self.lease_ttl / 3)

    async def release(self, lease: Lease) -> None:
        """Give a lease back; if the store is away, it expires on its own."""
        try:
            await self.store.release(lease)
        except Exception:
            log.warning("could not release lease %s; it will expire", lease.key)


class _Heartbeat:
    """``async with``: after ``every`` seconds, run ``beat()`` as a task; on exit, stop it."""

    __slots__ = ("_beat", "_every", "_task", "_timer")

    def __init__(self, beat: Callable[[], Coroutine[Any, Any, None]], every: float) -> None:
        self._beat = beat
        self._every = every
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._every, self._start)

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._beat())

    async def __aexit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
