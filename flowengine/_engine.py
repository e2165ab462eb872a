"""AsyncEngine drives flows of one spec (its synchronous facade, Engine, is in sync.py).

The engine decides, adapters act: it builds requests and reads responses, asks
the store to compare-and-set, and runs the compiled machine. Rejections (a bad
``state``, another session's callback) raise ``CallbackError`` and change
nothing; outcomes (``denied``, ``failed``, ``exchanged``) are states of the
returned ``Flow``, with the reason on ``flow.error``.

Exactly once: a flow's code is exchanged by one caller. Within a process,
concurrent callers share one in-flight task; across processes, a store lease
picks the one that sends, and the others wait for the stored outcome.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import attrs
import pluggy

from flowengine import _callbacks, _plugins, _security
from flowengine._client import Client
from flowengine._errors import (
    CallbackError,
    ConfigError,
    FlowError,
    FlowStateError,
    ProviderError,
    StoreError,
    TransportError,
)
from flowengine._http import HttpRequest, HttpResponse, Transport, TransportConfig
from flowengine._machine import BUILTIN_ACTIONS, BUILTIN_GUARDS, CompiledFlow, TransitionContext, compile_flow
from flowengine._records import ErrorInfo, Flow, HistoryEntry, Token, evolve_flow
from flowengine._spec import AuthorizationRequest, FlowSpec, MachineSpec, endpoint_problem, load_spec
from flowengine._store import Lease, Store
from flowengine._tokens import (
    build_request,
    build_token_request,
    read_revocation_response,
    read_token_response,
    render_params,
)

__all__ = ["AsyncEngine", "RetryPolicy"]

log = logging.getLogger("flowengine")
_T = TypeVar("_T")


@attrs.frozen
class RetryPolicy:
    """Backoff for requests that are safe to repeat (refresh, never a code exchange)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: full jitter, or ``Retry-After``."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


def _compile(spec: FlowSpec, pm: pluggy.PluginManager | None) -> CompiledFlow:
    """The spec compiled with the guards and actions of ``pm`` (compile_flow caches it per spec)."""
    if pm is not None:
        guards = {**BUILTIN_GUARDS, **_plugins.plugin_guards(pm)}
        actions = {**BUILTIN_ACTIONS, **_plugins.plugin_actions(pm)}
        return compile_flow(spec, guards=guards, actions=actions)
    return compile_flow(spec)


class AsyncEngine:
    """Runs flows of one spec against a store and a transport.

    ``store`` and ``transport`` are objects or, for the store, a URL that a
    plugin opens (``memory://``, ``sqlite:///path``). ``endpoints`` re-points
    named endpoints at run time; ``http://`` overrides must be on loopback.
    """

    def __init__(
        self,
        spec: FlowSpec | str | Path,
        *,
        client: Client,
        store: Store | str = "memory://",
        transport: Transport | None = None,
        endpoints: Mapping[str, str] | None = None,
        auto_exchange: bool = True,
        retry: RetryPolicy = RetryPolicy(),
        transport_config: TransportConfig = TransportConfig(),
        lease_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        self.spec = spec if isinstance(spec, FlowSpec) else load_spec(spec)
        self.compiled = _compile(self.spec, plugin_manager)
        self.client = client
        self.store: Store = _plugins.open_store(store, plugin_manager) if isinstance(store, str) else store
        self._transport = transport
        self.transport_config = transport_config
        self.endpoints = self._endpoints(endpoints or {})
        self.auto_exchange = auto_exchange
        self.retry = retry
        self.lease_ttl = lease_ttl
        self.clock = clock
        self._pm = plugin_manager
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    def _endpoints(self, overrides: Mapping[str, str]) -> dict[str, str]:
        merged = dict(self.spec.endpoints)
        for name, url in merged.items():  # a FlowSpec built by hand never met load_spec's checks
            if name not in overrides and (reason := endpoint_problem(url, local_ok=self.spec.local_only)):
                raise ConfigError(f"endpoint {name!r}: {reason}")
        for name, url in overrides.items():
            if name not in merged:
                known = ", ".join(sorted(merged))
                raise ConfigError(f"the spec has no endpoint {name!r} to re-point (it has {known})")
            # local_ok: an override may use http://, which endpoint_problem allows on loopback only.
            reason = endpoint_problem(url, local_ok=True)
            if reason:
                raise ConfigError(f"endpoint {name!r}: {reason}")
            merged[name] = url
        return merged

    @property
    def transport(self) -> Transport:
        """The transport, opened through the ``flowengine_transport`` hook on first use."""
        if self._transport is None:
            self._transport = _plugins.open_transport(self.transport_config, self._pm)
        return self._transport

    # --- the flow -------------------------------------------------------------------

    async def start(
        self,
        *,
        scope: str | Sequence[str] | None = None,
        session: str | None = None,
        redirect_uri: str | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> Flow:
        """Begin a flow: store it ``redirected`` and return it with its ``authorization_url``.

        ``session`` binds the flow to a browser session (any opaque id): its
        callback must then carry the same id. Only digests of it are stored.
        ``inputs`` gives values to the spec's declared ``inputs`` for the
        authorization request (e.g. a ``login_hint``); they are not stored.
        """
        authorization, machine = self._flow_parts()
        redirect_uri = redirect_uri or self.client.redirect_uri
        if not redirect_uri:
            raise ConfigError("no redirect URI: set Client(redirect_uri=...) or pass redirect_uri=")
        _security.check_redirect_uri(
            redirect_uri,
            registered_domain=self.client.registered_domain or self.spec.redirect.registered_domain,
        )
        if scope is not None and not isinstance(scope, str):
            scope = authorization.scope_separator.join(scope)
        state = _security.new_state()
        verifier = _security.new_verifier() if self.spec.pkce else None
        undeclared = set(inputs or ()) - set(self.spec.inputs)
        if undeclared:
            raise ConfigError(f"spec {self.spec.name!r} declares no input(s) {sorted(undeclared)}")
        values = {
            **(inputs or {}),
            "client_id": self.client.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope or None,
            "state": state,
            "code_challenge": _security.pkce_challenge(verifier) if verifier else None,
            "code_challenge_method": "S256" if verifier else None,
        }
        endpoint = self.endpoints[authorization.endpoint]
        query = urlencode(render_params(authorization.params, values))
        url = f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
        now = self.clock()
        initial = machine.initial
        flow = Flow(
            id=secrets.token_urlsafe(16),
            spec=self.spec.name,
            state=initial,
            created_at=now,
            expires_at=now + machine.ttl,
            client_id=self.client.client_id,
            redirect_uri=redirect_uri,
            state_hash=_security.digest(state),
            scope=scope or None,
            session_hash=_security.digest(session) if session is not None else None,
            code_verifier=verifier,
            history=(HistoryEntry(now, "start", "", initial),),
        )
        await self._store(self.store.create(flow))
        self._notify(flow, "start", "", initial)
        log.debug("flow %s started (%s)", flow.id, self.spec.name)
        return evolve_flow(flow, authorization_url=url)

    async def callback(self, callback: _callbacks.CallbackInput, *, session: str | None = None) -> Flow:
        """Finish the redirect leg with the callback URL (or its parameters).

        Returns the flow in its new state (``exchanged`` with auto-exchange, or
        ``denied``/``failed``). A replay of the same callback returns the same
        outcome and sends nothing. Raises ``CallbackError`` for a callback that
        must not be acted on; nothing is sent then.
        """
        _authorization, machine = self._flow_parts()
        rules = self.spec.callback
        params = _callbacks.parse_callback(callback, rules)
        if not params.state:
            raise CallbackError("the callback carries no state parameter", code="state_missing")
        state_hash = _security.digest(params.state)
        flow = await self._store(self.store.get_by_state(state_hash))
        if flow is None or not _security.digests_equal(flow.state_hash, state_hash):
            raise CallbackError("no flow is waiting for this state (unknown or purged)", code="state_unknown")
        foreign = self._foreign(flow)
        if foreign:
            raise CallbackError(foreign, code="wrong_provider", flow_id=flow.id)
        if flow.session_hash is not None and not _security.digests_equal(
            flow.session_hash, _security.digest(session) if session is not None else None
        ):
            raise CallbackError(
                "the callback comes from another session", code="session_mismatch", flow_id=flow.id
            )
        self._check_issuer(params.iss, flow.id)
        this_callback = _callbacks.callback_digest(params)
        for _ in range(8):
            if flow.state != machine.initial:
                if flow.callback_digest is None and flow.error and flow.error.code == "flow_expired":
                    raise CallbackError(
                        "the flow expired before its callback", code="flow_expired", flow_id=flow.id
                    )
                if not _security.digests_equal(flow.callback_digest, this_callback):
                    raise CallbackError("this state was already used", code="state_used", flow_id=flow.id)
                return await self._continue(flow)
            if self.clock() >= flow.expires_at:
                await self._expire(flow)
                raise CallbackError(
                    "the flow expired before its callback", code="flow_expired", flow_id=flow.id
                )
            ctx = self._context(flow, "callback", error=_callbacks.callback_error(params, rules))
            ctx.params = params
            moved = self._advance(ctx, callback_digest=this_callback)
            if await self._compare_and_set(moved, flow, "callback"):
                return await self._continue(moved)
            flow = await self._reload(flow.id)
        raise StoreError("the flow kept changing under this callback", code="store_conflict", flow_id=flow.id)

    def _flow_parts(self) -> tuple[AuthorizationRequest, MachineSpec]:
        """The authorization request and machine; a grant-only spec has neither."""
        if self.spec.authorization is None or self.spec.machine is None:
            raise ConfigError(
                f"spec {self.spec.name!r} is grant-only: it has no authorization flow; use grant()",
                code="grant_only_spec",
            )
        return self.spec.authorization, self.spec.machine

    def _check_issuer(self, iss: str | None, flow_id: str) -> None:
        expected = self.spec.issuer
        if expected is None:
            return
        if iss is None and self.spec.callback.iss_required:
            raise CallbackError("the callback carries no issuer", code="issuer_mismatch", flow_id=flow_id)
        if iss is not None and iss != expected:
            raise CallbackError(
                "the callback names another issuer (a mix-up attack?)",
                code="issuer_mismatch",
                flow_id=flow_id,
            )

    async def _continue(self, flow: Flow) -> Flow:
        if self.auto_exchange and self.compiled.can_fire(flow.state, "exchange"):
            return await self._exchange(flow)
        return flow

    async def exchange(self, flow_id: str) -> Flow:
        """Exchange the code of an authorized flow for a token; the outcome is the flow's state."""
        flow = await self.get(flow_id)
        if flow is None:
            raise FlowStateError(f"no flow {flow_id!r}", code="flow_unknown", flow_id=flow_id)
        foreign = self._foreign(flow)
        if foreign:
            raise FlowStateError(foreign, code="wrong_provider", flow_id=flow.id)
        return await self._exchange(flow)

    def _foreign(self, flow: Flow) -> str | None:
        """Why ``flow`` is not this engine's to finish (SECURITY.md 4), or None.

        Engines of one spec may share a store with different clients (production
        and staging): a flow is bound to its spec and its client, so its code only
        ever goes to the token endpoint, with the credentials, it was issued for.
        """
        if flow.spec != self.spec.name:
            return f"this callback belongs to a {flow.spec!r} flow, not {self.spec.name!r}"
        if flow.client_id != self.client.client_id:
            return "this callback belongs to a flow of another client of this provider"
        return None

    async def _exchange(self, flow: Flow) -> Flow:
        if self.compiled.is_final(flow):
            return flow
        if not self.compiled.can_fire(flow.state, "exchange"):
            raise FlowStateError(f"a {flow.state!r} flow cannot be exchanged", flow_id=flow.id)
        return await self._single_flight(f"exchange:{flow.id}", lambda: self._exchange_once(flow.id))

    async def _single_flight(self, key: str, work: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``work`` once for concurrent callers of this engine with the same key."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(work())
            self._inflight[key] = future
            future.add_done_callback(lambda _f: self._inflight.pop(key, None))
        result: _T = await asyncio.shield(future)
        return result

    async def _exchange_once(self, flow_id: str) -> Flow:
        lease = await self._store(self.store.acquire(f"exchange:{flow_id}", self.lease_ttl))
        if lease is None:
            return await self._wait_for_outcome(flow_id)
        try:
            flow = await self._reload(flow_id)
            if self.compiled.is_final(flow):
                return flow
            if flow.exchange_started_at is not None:
                interrupted = ProviderError(
                    "an earlier exchange of this code was interrupted; codes are single-use",
                    code="exchange_interrupted",
                )
                return await self._finish_exchange(flow, None, interrupted)
            if self.clock() >= flow.expires_at:
                return await self._expire(flow)
            marked = evolve_flow(flow, exchange_started_at=self.clock(), version=flow.version + 1)
            if not await self._store(self.store.compare_and_set(marked, flow.version)):
                raise StoreError("the flow changed while its exchange held the lease", code="store_conflict")
            token: Token | None = None
            error: FlowError | None = None
            try:
                token = await self._request_token(
                    "authorization_code",
                    {
                        "code": flow.code,
                        "code_verifier": flow.code_verifier,
                        "redirect_uri": flow.redirect_uri,
                    },
                    retry=False,
                )
            except TransportError as exc:
                if not exc.sent:
                    # Nothing reached the server: the code is unspent, the flow may try again.
                    unmarked = evolve_flow(marked, exchange_started_at=None, version=marked.version + 1)
                    await self._store(self.store.compare_and_set(unmarked, marked.version))
                    raise
                error = exc
            except ProviderError as exc:
                error = exc
            return await self._finish_exchange(marked, token, error)
        finally:
            await self._release(lease)

    async def _finish_exchange(self, flow: Flow, token: Token | None, error: FlowError | None) -> Flow:
        ctx = self._context(flow, "exchange", error=error)
        ctx.token = token
        moved = self._advance(ctx)
        if ctx.save_token and token is not None:
            # Token first: a crash before the flow is saved leaves the flow
            # `exchange_started` (it then fails as interrupted), never a lost token.
            await self._store(self.store.put_token(token))
        if not await self._compare_and_set(moved, flow, "exchange"):
            raise StoreError("the flow changed during its exchange", code="store_conflict", flow_id=flow.id)
        return moved

    async def _wait_for_outcome(self, flow_id: str) -> Flow:
        """Another worker holds the exchange lease: poll the store until the flow is final.

        When the lease comes free with the flow still not final, its holder died
        mid-exchange: take over (the flow then fails as interrupted, never re-sent).
        """
        delay = 0.01
        while True:
            flow = await self._reload(flow_id)
            if self.compiled.is_final(flow):
                return flow
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
            lease = await self._store(self.store.acquire(f"exchange:{flow_id}", 0.001))
            if lease is not None:
                await self._release(lease)
                return await self._exchange_once(flow_id)

    async def _expire(self, flow: Flow) -> Flow:
        if not self.compiled.can_fire(flow.state, "expire"):
            return flow
        error = FlowStateError("the flow expired", code="flow_expired", flow_id=flow.id)
        moved = self._advance(self._context(flow, "expire", error=error))
        if await self._compare_and_set(moved, flow, "expire"):
            return moved
        return await self._reload(flow.id)

    # --- tokens ---------------------------------------------------------------------

    async def grant(self, grant: str, inputs: Mapping[str, str] | None = None) -> Token:
        """Run a non-interactive grant (Podio's ``app`` or ``password``) and store its token.

        ``inputs`` gives the spec's declared inputs (``app_id``, ``app_token``, …).
        Safe to retry, so connection errors, 5xx and rate limits are retried with
        backoff per ``retry``. Not for ``authorization_code`` (use start/callback).
        """
        if grant == "authorization_code":
            raise ConfigError("the authorization_code grant needs a person: use start() and callback()")
        undeclared = set(inputs or ()) - set(self.spec.inputs)
        if undeclared:
            raise ConfigError(f"spec {self.spec.name!r} declares no input(s) {sorted(undeclared)}")
        token = await self._request_token(grant, dict(inputs or {}), retry=True)
        await self._store(self.store.put_token(token))
        return token

    async def refresh(self, token: Token | str) -> Token:
        """Refresh a token (a Token or its store key); concurrent callers share one request.

        When another worker already refreshed it, the stored token is returned
        without a request. ``invalid_grant`` with an unchanged stored refresh
        token marks the grant dead and raises (SECURITY.md 18).
        """
        key = token if isinstance(token, str) else token.key
        seen = None if isinstance(token, str) else token
        asked_at = self.clock()
        return await self._single_flight(f"refresh:{key}", lambda: self._refresh_once(key, seen, asked_at))

    @staticmethod
    def _refreshed_since(current: Token, seen: Token | None, asked_at: float) -> bool:
        """True when ``current`` is newer than what the caller had when it asked."""
        if seen is not None and current.access_token != seen.access_token:
            return True
        return current.obtained_at >= asked_at

    async def _refresh_once(self, key: str, seen: Token | None, asked_at: float) -> Token:
        lease = await self._store(self.store.acquire(f"refresh:{key}", self.lease_ttl))
        if lease is None:
            return await self._wait_for_refresh(key, seen, asked_at)
        try:
            current = await self._store(self.store.get_token(key)) or seen
            if current is None:
                raise FlowStateError(f"no token {key!r} in the store", code="token_unknown")
            if not current.dead and self._refreshed_since(current, seen, asked_at):
                return current  # another caller or worker refreshed it while we waited
            if current.dead:
                raise ProviderError("this grant is dead; a new authorization is needed", code="invalid_grant")
            if not current.refresh_token:
                raise FlowStateError("this token has no refresh token", code="no_refresh_token")
            try:
                fresh = await self._request_token(
                    "refresh_token", {"refresh_token": current.refresh_token}, retry=True
                )
            except ProviderError as exc:
                if exc.code != "invalid_grant":
                    raise
                again = await self._store(self.store.get_token(key))
                if again is not None and again.refresh_token != current.refresh_token:
                    return again
                await self._store(self.store.put_token(attrs.evolve(current, dead=True)))
                raise
            fresh = attrs.evolve(
                fresh,
                account=current.account,
                refresh_token=fresh.refresh_token or current.refresh_token,
            )
            await self._store(self.store.put_token(fresh))
            return fresh
        finally:
            await self._release(lease)

    async def _wait_for_refresh(self, key: str, seen: Token | None, asked_at: float) -> Token:
        deadline = time.monotonic() + self.lease_ttl + 5
        delay = 0.01
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
            current = await self._store(self.store.get_token(key))
            if current is not None and self._refreshed_since(current, seen, asked_at):
                if current.dead:
                    raise ProviderError(
                        "this grant is dead; a new authorization is needed", code="invalid_grant"
                    )
                return current
            lease = await self._store(self.store.acquire(f"refresh:{key}", 0.001))
            if lease is not None:  # the other worker gave up without refreshing
                await self._release(lease)
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
                f"spec {self.spec.name!r} names no revocation endpoint", code="revocation_unsupported"
            )
        current = await self.get_token(token) if isinstance(token, str) else token
        if current is None:
            raise FlowStateError(f"no token {token!r} in the store", code="token_unknown")
        if hint is None:
            hint = "refresh_token" if current.refresh_token else "access_token"
        if hint not in ("access_token", "refresh_token"):
            raise ConfigError(f"hint must be access_token or refresh_token, not {hint!r}")
        value = current.refresh_token if hint == "refresh_token" else current.access_token
        if not value:
            raise FlowStateError(f"this token has no {hint}", code="no_refresh_token")
        values = self._values({"token": value, "token_type_hint": hint})
        request = build_request(
            rule,
            self.endpoints[rule.endpoint],
            values,
            self.transport_config.user_agent,
        )
        sent = _security.sent_secrets(values, request)  # scrubbed from what comes back
        await self._send(
            request,
            "revocation",
            retry=True,
            read=lambda r: read_revocation_response(self.spec, r, now=self.clock(), sent=sent),
        )
        if hint == "access_token" and current.refresh_token:
            # The refresh token still works at the provider: keep it, so it can be used or revoked.
            stored = await self._store(self.store.get_token(current.key))
            if stored is not None:
                await self._store(self.store.put_token(attrs.evolve(stored, expires_at=self.clock())))
            return
        await self._store(self.store.delete_token(current.key))

    def _values(self, values: Mapping[str, str | None]) -> dict[str, str | None]:
        return {"client_id": self.client.client_id, "client_secret": self.client.client_secret, **values}

    async def _request_token(self, grant: str, values: Mapping[str, str | None], *, retry: bool) -> Token:
        if grant not in self.spec.grants:
            raise ConfigError(f"spec {self.spec.name!r} has no {grant!r} grant", code="grant_unsupported")
        request = build_token_request(
            self.spec,
            grant,
            self.endpoints[self.spec.grants[grant].endpoint],
            self._values(values),
            self.transport_config.user_agent,
        )
        sent = _security.sent_secrets(self._values(values), request)  # scrubbed from what comes back
        return await self._send(
            request,
            f"{grant} grant",
            retry=retry,
            read=lambda r: read_token_response(
                self.spec, r, client_id=self.client.client_id, now=self.clock(), sent=sent
            ),
        )

    async def _send(
        self, request: HttpRequest, what: str, *, retry: bool, read: Callable[[HttpResponse], _T]
    ) -> _T:
        """Send and read a request, retrying what is retryable when ``retry`` (never a code exchange)."""
        attempts = self.retry.attempts if retry else 1
        for attempt in range(attempts):
            try:
                return read(await self.transport.send(request))
            except (ProviderError, TransportError) as exc:
                retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
                if not exc.retryable or attempt + 1 >= attempts:
                    raise
                if retry_after is not None and retry_after > self.retry.max_delay:
                    raise  # the provider said when; retrying sooner is what it asked us not to do
                delay = self.retry.delay(attempt, retry_after)
                log.info("%s: %s; retrying in %.2fs", what, exc.code, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- reading --------------------------------------------------------------------

    async def get(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None."""
        return await self._store(self.store.get(flow_id))

    async def token_for(self, flow: Flow) -> Token | None:
        """The stored token an exchanged flow obtained, or None."""
        return await self.get_token(flow.token_key) if flow.token_key else None

    async def get_token(self, key: str) -> Token | None:
        """The stored token under ``key`` (``provider:type:id``), or None."""
        return await self._store(self.store.get_token(key))

    async def tokens(self) -> list[Token]:
        """Every stored token of this engine's provider."""
        return await self._store(self.store.list_tokens(provider=self.spec.name))

    async def flows(self, *, state: str | None = None) -> list[Flow]:
        """Stored flows of this spec, optionally only those in ``state``."""
        return await self._store(self.store.list_flows(spec=self.spec.name, state=state))

    async def purge(self) -> int:
        """Remove expired flows from the store; how many went."""
        return await self._store(self.store.purge(self.clock()))

    def is_final(self, flow: Flow) -> bool:
        """True when the flow can move no further."""
        return self.compiled.is_final(flow)

    def present(self, flow: Flow, step: str, **detail: Any) -> bool:
        """Hand a step to the ``flowengine_present`` UI hook; True if a plugin showed it."""
        pm = self._pm or _plugins.get_plugin_manager()
        return bool(pm.hook.flowengine_present(flow=flow, step=step, detail=detail))

    async def aclose(self) -> None:
        """Close the transport and the store."""
        if self._transport is not None:
            await self._transport.aclose()
        await self.store.aclose()

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- plumbing -------------------------------------------------------------------

    def _context(self, flow: Flow, event: str, *, error: FlowError | None) -> TransitionContext:
        return TransitionContext(self.spec, flow, event, error=error)

    def _advance(self, ctx: TransitionContext, **extra: Any) -> Flow:
        """Fire the machine and build (not store) the flow it leads to."""
        flow = ctx.flow
        dest = self.compiled.fire(ctx)
        error = ctx.changes.get("error")
        entry = HistoryEntry(
            self.clock(), ctx.event, flow.state, dest, error.code if isinstance(error, ErrorInfo) else None
        )
        return evolve_flow(
            flow,
            state=dest,
            version=flow.version + 1,
            history=(*flow.history, entry),
            **ctx.changes,
            **extra,
        )

    async def _compare_and_set(self, moved: Flow, before: Flow, event: str) -> bool:
        if not await self._store(self.store.compare_and_set(moved, before.version)):
            return False
        self._notify(moved, event, before.state, moved.state)
        log.debug("flow %s: %s %s -> %s", moved.id, event, before.state, moved.state)
        return True

    def _notify(self, flow: Flow, event: str, source: str, dest: str) -> None:
        # The transition is already stored: an observer that fails must not stop the flow.
        try:
            _plugins.notify_transition(flow, event, source, dest, self._pm)
        except Exception:  # observers are other people's code
            log.exception("a flowengine_transition observer failed on flow %s (%s)", flow.id, event)

    async def _reload(self, flow_id: str) -> Flow:
        flow = await self._store(self.store.get(flow_id))
        if flow is None:
            raise CallbackError(
                "the flow is gone from the store (expired and purged?)", code="state_unknown", flow_id=flow_id
            )
        return flow

    async def _release(self, lease: Lease) -> None:
        try:
            await self.store.release(lease)
        except Exception:
            log.warning("could not release lease %s; it will expire", lease.key)

    async def _store(self, call: Awaitable[_T]) -> _T:
        """Await a store call; anything but a FlowError becomes ``store_unavailable``."""
        try:
            return await call
        except FlowError:
            raise
        except Exception as exc:
            raise StoreError(f"the store failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
