"""AsyncEngine: the driver that carries out what the pure core decides.

``FlowCore`` (``_core``) decides every step of a flow; the driver performs the
intents it returns through the store and transport hooks, and owns everything
that is about time and other processes: single-flight within the process,
leases across processes, retries with backoff, deadlines, and keeping a
provider's answer until the store takes it (``_saving``). Token operations
(refresh, grant, revoke) are in ``_tokens_driver``.

Rejections (a bad ``state``, another session's callback) raise ``CallbackError``
and change nothing; outcomes (``denied``, ``failed``, ``exchanged``) are states of
the returned ``Flow``, with ``flow.outcome`` and the reason on ``flow.error``.
Exactly once: a flow's code is exchanged by one caller. Within a process,
concurrent callers share one in-flight task; across processes, a store lease
picks the one that sends, and the others wait for the stored outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Required, TypedDict

import pluggy

from flowengine import _callbacks, _plugins, _security
from flowengine._arguments import refuse_bad_text, scope_items
from flowengine._bounded import carried
from flowengine._client import Client
from flowengine._clock import Clock, SystemClock, as_clock
from flowengine._core import FlowCore
from flowengine._device_driver import DeviceOperations
from flowengine._entropy import flow_secrets
from flowengine._errors import (
    CallbackError,
    ConfigError,
    ErrorCode,
    FlowStateError,
    StoreError,
    TransportError,
)
from flowengine._http import Transport, TransportConfig
from flowengine._machine import CompiledFlow, compile_flow
from flowengine._oidc_driver import OpenIdOperations, device_view, load_key, new_assertion_id
from flowengine._records import Flow, Token
from flowengine._retry import RetryPolicy
from flowengine._saving import Saver, store_call
from flowengine._spec import FlowSpec
from flowengine._spec_check import override_problem
from flowengine._spec_load import load_spec
from flowengine._steps import (
    Answer,
    Begin,
    Callback,
    Exchange,
    SaveFlow,
    SaveToken,
    SendFailed,
    SendRequest,
    Step,
)
from flowengine._store import Store
from flowengine._tokens_driver import TokenOperations

__all__ = ["AsyncEngine", "EngineOptions"]

log = logging.getLogger("flowengine")

#: How often a callback retries its compare-and-set when other callers keep winning.
_CAS_ATTEMPTS = 8


class EngineOptions(TypedDict, total=False):
    """The keyword options of ``AsyncEngine`` (and so of ``Engine``), for typing ``**options``."""

    client: Required[Client]
    store: Store | str
    transport: Transport | None
    endpoints: Mapping[str, str] | None
    auto_exchange: bool
    retry: RetryPolicy
    transport_config: TransportConfig
    lease_ttl: float
    save_deadline: float
    clock: Clock | Callable[[], float]
    plugin_manager: pluggy.PluginManager | None


def _error_code(step: Step) -> str | None:
    """The code an exchange ended with (None when it was granted)."""
    if step.error is not None:
        return step.error.code
    return step.flow.error.code if step.flow.error is not None and step.flow.outcome != "granted" else None


def _compile(spec: FlowSpec, pm: pluggy.PluginManager | None) -> CompiledFlow:
    guards, actions = _plugins.guards_and_actions(pm)
    return compile_flow(spec, guards=guards, actions=actions)


class AsyncEngine(TokenOperations, OpenIdOperations, DeviceOperations):
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
        lease_ttl: float = 15.0,
        save_deadline: float = 60.0,
        clock: Clock | Callable[[], float] = SystemClock(),
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        # A FlowSpec built by hand never met load_spec's checks: it meets them here (the same object).
        self.spec = load_spec(spec)
        self.compiled = _compile(self.spec, plugin_manager)
        self.client = client
        self.store: Store = _plugins.open_store(store, plugin_manager) if isinstance(store, str) else store
        self._transport = transport
        self.transport_config = transport_config
        self.endpoints = self._endpoints(endpoints or {})
        self.auto_exchange = auto_exchange
        self.retry = retry
        self.lease_ttl = lease_ttl
        self.clock: Clock = as_clock(clock)
        self._pm = plugin_manager
        device = device_view(self.spec)
        self.core = FlowCore(
            self.spec,
            self.compiled,
            client,
            self.endpoints,
            user_agent=transport_config.user_agent,
            device_compiled=_compile(device, plugin_manager) if device is not None else None,
            client_key=load_key(client),
        )
        self._saver = Saver(self.store, self.clock, deadline=save_deadline)
        self._closed = False
        super().__init__()
        self._init_openid()

    def _endpoints(self, overrides: Mapping[str, str]) -> dict[str, str]:
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"endpoints must map endpoint names to URLs, not {type(overrides).__name__}")
        refuse_bad_text(endpoints=overrides)
        merged = dict(self.spec.endpoints)
        for name, url in overrides.items():
            if name not in self.spec.endpoint_names:
                known = ", ".join(sorted(self.spec.endpoint_names))
                raise ConfigError(f"the spec has no endpoint {name!r} to re-point (it has {known})")
            reason = override_problem(self.spec, name, url)
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
        subject: str | None = None,
        connection: Mapping[str, str] | None = None,
    ) -> Flow:
        """Begin a flow: store it in its initial state and return it with its ``authorization_url``.

        ``session`` binds the flow to a browser session (any opaque id): its
        callback must then carry the same id. Only digests of it are stored.
        ``inputs`` gives values to the spec's declared ``inputs`` for the
        authorization request (e.g. a ``login_hint``); they are not stored.
        ``subject`` says who the person is in your application: the token is
        filed under it when the provider's answer names no account.
        ``connection`` gives the spec's connection variables (``{"subdomain":
        "acme"}``): checked against their patterns, stored with the flow, and the
        flow is bound to the endpoints they fill (``ConfigError``
        ``connection_invalid`` otherwise). With no ``scope``, the spec's
        ``default_scopes`` are asked for.
        """
        authorization, _machine = self.core.parts()
        if scope is not None and not isinstance(scope, str):
            scope = authorization.scope_separator.join(scope_items(scope))
        refuse_bad_text(scope=scope, session=session, subject=subject)
        redirect_uri = redirect_uri or self.client.redirect_uri
        if not redirect_uri:
            raise ConfigError("no redirect URI: set Client(redirect_uri=...) or pass redirect_uri=")
        _security.check_redirect_uri(
            redirect_uri,
            registered_domain=self.client.registered_domain or self.spec.redirect.registered_domain,
        )
        begin = Begin(
            flow_secrets(pkce=self.spec.pkce),
            redirect_uri,
            scope=scope or None,
            session=session,
            subject=subject,
            inputs=self.declared_inputs(inputs),
            connection=self.core.connection(connection),
        )
        core = await self.core_for(begin.connection)
        step = core.step(None, begin, self.clock())
        await self._apply(step)
        log.debug("flow %s started (%s)", step.flow.id, self.spec.name)
        return step.flow

    async def callback(self, callback: _callbacks.CallbackInput, *, session: str | None = None) -> Flow:
        """Finish the redirect leg with the callback URL (or its parameters).

        Returns the flow in its new state (``exchanged`` with auto-exchange, or
        ``denied``/``failed``). A replay of the same callback returns the same
        outcome and sends nothing. Raises ``CallbackError`` for a callback that
        must not be acted on; nothing is sent then.
        """
        self.core.parts()
        params = _callbacks.parse_callback(callback, self.spec.callback)
        if not params.state:
            raise CallbackError("the callback carries no state parameter", code=ErrorCode.STATE_MISSING)
        state_hash = _security.digest(params.state)
        flow = await store_call(self.store.get_by_state(state_hash))
        if flow is None or not _security.digests_equal(flow.state_hash, state_hash):
            raise CallbackError(
                "no flow is waiting for this state (unknown or purged)", code=ErrorCode.STATE_UNKNOWN
            )
        flow = self.core.settled(flow)
        core = await self.core_for(flow.connection)
        for _ in range(_CAS_ATTEMPTS):
            step = core.step(flow, Callback(params, session), self.clock())
            if await self._apply(step):
                if step.error is not None:
                    raise step.error
                return await self._continue(step.flow)
            flow = await self._reload(flow.id)
        raise StoreError(
            "the flow kept changing under this callback", code=ErrorCode.STORE_CONFLICT, flow_id=flow.id
        )

    async def _continue(self, flow: Flow) -> Flow:
        """After a callback: exchange when the flow's machine can (or join the exchange in flight)."""
        if self.auto_exchange and self.core.exchangeable(flow):
            return await self._exchange(flow)
        return flow

    async def exchange(self, flow_id: str) -> Flow:
        """Exchange the code of an authorized flow for a token; see ``flow.outcome`` for how it ended.

        A final flow (of any machine: a granted device flow too) is returned unchanged.
        """
        flow = await self.get(flow_id)
        if flow is None:
            raise FlowStateError(f"no flow {flow_id!r}", code=ErrorCode.FLOW_UNKNOWN, flow_id=flow_id)
        (await self.core_for(flow.connection)).check_owner(flow)
        return await self._exchange(flow)

    async def _exchange(self, flow: Flow) -> Flow:
        if self.core.is_final(flow):
            return flow
        if not self.core.exchangeable(flow):
            hint = " (a device flow is polled: poll_device())" if flow.device is not None else ""
            raise FlowStateError(f"a {flow.state!r} flow cannot be exchanged{hint}", flow_id=flow.id)
        return await self.single_flight(f"exchange:{flow.id}", lambda: self._exchange_once(flow.id))

    async def _exchange_once(self, flow_id: str) -> Flow:
        lease = await store_call(self.store.acquire(f"exchange:{flow_id}", self.lease_ttl))
        if lease is None:
            return await self._wait_for_outcome(flow_id)
        try:
            flow = await self._reload(flow_id)
            core = await self.core_for(flow.connection)
            jti = new_assertion_id() if core.signs_assertions else None
            begun = core.step(flow, Exchange(jti), self.clock())
            send = await self._apply_or_conflict(begun)
            if send is None:
                return begun.flow  # final already, expired, or found interrupted
            timer = self.time_request("exchange", send.request, 1, flow_id=flow_id)
            status = None
            try:
                async with self.holding(lease):
                    response = await self.send_once(send.request)
            except TransportError as exc:
                answered = core.step(begun.flow, SendFailed(exc), self.clock())
            else:
                status = response.status
                answered = core.step(begun.flow, Answer(response, send.sent_secrets), self.clock())
            # A held token waits for its ID token's keys, or for the userinfo that names its account.
            answered = await self.settle(core, begun.flow, answered)
            timer.done(status=status, error=_error_code(answered))
            await self._apply_or_conflict(answered, answered=True)
            if answered.error is not None:
                raise answered.error
            return answered.flow
        finally:
            await self.release(lease)

    async def _wait_for_outcome(self, flow_id: str) -> Flow:
        """Another worker holds the exchange lease: wait until the flow is final, within a deadline.

        When the lease comes free with the flow still not final, its holder died
        mid-exchange: take over (the flow then fails as interrupted, never re-sent).
        """
        deadline = self.clock() + self.lease_ttl + self.retry.max_delay
        delay = 0.01
        while self.clock() < deadline:
            flow = await self._reload(flow_id)
            if self.core.is_final(flow):
                return flow
            await self.clock.sleep(delay)
            delay = min(delay * 2, 0.25)
            lease = await store_call(self.store.acquire(f"exchange:{flow_id}", 0.001))
            if lease is not None:
                await self.release(lease)
                return await self._exchange_once(flow_id)
        raise StoreError(
            "another worker holds this flow's exchange and did not finish it in time",
            code=ErrorCode.STORE_CONFLICT,
            flow_id=flow_id,
        )

    # --- carrying out intents -------------------------------------------------------

    async def _apply(self, step: Step, *, answered: bool = False) -> bool:
        """Carry out a step's saves, in order; False when its compare-and-set lost a race.

        A token is kept until the store takes it (``Saver``), and so is the flow of a
        step that records a provider's answer (``answered``): what the provider said
        exists nowhere else. Before anything is sent, a store failure fails the call
        at once (SECURITY.md 20). A ``SendRequest`` is not carried out here:
        ``_apply_or_conflict`` hands it to the caller.
        """
        for intent in step.intents:
            if isinstance(intent, SaveToken):
                await self._saver.save_token(intent.token)
            elif isinstance(intent, SaveFlow):
                if intent.expected_version is None:
                    await store_call(self.store.create(intent.flow))
                elif answered:
                    if not await self._saver.save_flow(intent.flow, intent.expected_version):
                        return False
                elif not await store_call(self.store.compare_and_set(intent.flow, intent.expected_version)):
                    return False
        if step.moved:
            self._notify(step)
        return True

    async def _apply_or_conflict(self, step: Step, *, answered: bool = False) -> SendRequest | None:
        """Carry out a step taken under the exchange lease; return the request it sends, if any."""
        if not await self._apply(step, answered=answered):
            raise StoreError(
                "the flow changed while its exchange held the lease",
                code=ErrorCode.STORE_CONFLICT,
                flow_id=step.flow.id,
            )
        return next((i for i in step.intents if isinstance(i, SendRequest)), None)

    def _notify(self, step: Step) -> None:
        # The transition is already stored: an observer that fails must not stop the flow.
        flow = step.flow
        assert step.event is not None
        assert step.source is not None
        log.debug("flow %s: %s %s -> %s", flow.id, step.event, step.source, flow.state)
        try:
            _plugins.notify_transition(flow, step.event, step.source, flow.state, self._pm)
        except Exception:  # observers are other people's code
            log.exception("a flowengine_transition observer failed on flow %s (%s)", flow.id, step.event)

    # --- reading --------------------------------------------------------------------

    async def get(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None; its ``outcome`` is what its machine gives its state."""
        if not carried(flow_id):
            return None
        flow = await store_call(self.store.get(flow_id))
        return None if flow is None else self.core.settled(flow)

    async def token_for(self, flow: Flow) -> Token | None:
        """The stored token an exchanged flow obtained, or None."""
        return await self.get_token(flow.token_key) if flow.token_key else None

    async def flows(self, *, state: str | None = None) -> list[Flow]:
        """Stored flows of this spec, optionally only those in ``state``.

        A flow whose stored outcome its machine disagrees with is left out with a
        warning, as stores leave out records they cannot read.
        """
        found = []
        for flow in await store_call(self.store.list_flows(spec=self.spec.name, state=state)):
            try:
                found.append(self.core.settled(flow))
            except StoreError as exc:
                log.warning("flow %s left out of the listing: %s", flow.id, exc.code)
        return found

    async def purge(self) -> int:
        """Remove expired flows from the store; how many went."""
        return await store_call(self.store.purge(self.clock()))

    def is_final(self, flow: Flow) -> bool:
        """True when the flow can move no further."""
        return self.core.is_final(flow)

    def present(self, flow: Flow, step: str, **detail: Any) -> bool:
        """Hand a step to the ``flowengine_present`` UI hook; True if a presenter showed it."""
        pm = self._pm or _plugins.get_plugin_manager()
        return bool(pm.hook.flowengine_present(flow=flow, step=step, detail=detail))

    async def aclose(self) -> None:
        """Save what is still unsaved (within the deadline), then close the transport and the store.

        Closing twice is harmless: the second time does nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self._saver.flush()
        finally:
            if self._transport is not None:
                await self._transport.aclose()
            await self.store.aclose()

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _reload(self, flow_id: str) -> Flow:
        flow = await self.get(flow_id)
        if flow is None:
            raise CallbackError(
                "the flow is gone from the store (expired and purged?)",
                code=ErrorCode.STATE_UNKNOWN,
                flow_id=flow_id,
            )
        return flow
