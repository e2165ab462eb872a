"""The pure core: a flow and an input in; the new flow and the intents to carry out, out.

``FlowCore.step(flow, event, now)`` is the whole protocol logic of a flow, as
h11 is of HTTP/1.1: it never awaits, never reads a clock (``now`` is an input),
never touches a store or a socket. It returns a ``Step``: the flow the machine
leads to and the intents that make it so (``SaveFlow``, ``SendRequest``,
``SaveToken``), in the order the driver must carry them out; or it raises a
``CallbackError`` for a callback that must not be acted on, having changed
nothing. Randomness (the flow id, ``state``, the PKCE verifier) comes in with the
``Begin`` input, so every step is a function of its arguments.

Token operations (refresh, grant, revoke) have no flow and no machine: the core
builds their requests and reads their answers (``_core_tokens``), and the driver runs
them. OpenID Connect's ID token steps are in ``_core_openid``, the device flow's
(RFC 8628) in ``_core_device``; a signed client assertion's ``jti`` comes in with its
input too.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowengine import _callbacks, _security, _templates, _variables
from flowengine._arguments import refuse_bad_text
from flowengine._callbacks import CallbackParams
from flowengine._client import Client
from flowengine._client_auth import ClientKey
from flowengine._core_device import DeviceSteps
from flowengine._discovery import ProviderMetadata
from flowengine._endpoints import Endpoints, encode_query, safe_variables, with_params
from flowengine._errors import (
    CallbackError,
    ConfigError,
    ErrorCode,
    FlowError,
    FlowStateError,
    ProviderError,
    TransportError,
)
from flowengine._http import HttpRequest, HttpResponse
from flowengine._machine import CompiledFlow, TransitionContext
from flowengine._presets import Trigger
from flowengine._records import AccountRef, ErrorInfo, Flow, HistoryEntry, Token, evolve
from flowengine._spec import AuthorizationRequest, FlowSpec, MachineSpec
from flowengine._steps import (
    AccountAnswer,
    Answer,
    Begin,
    BeginDevice,
    Callback,
    Exchange,
    Expire,
    Input,
    Intent,
    Interrupt,
    KeysAnswer,
    SaveFlow,
    SaveToken,
    SendFailed,
    SendRequest,
    Step,
)
from flowengine._tokens import read_account_response, render_params

__all__ = ["FlowCore"]

#: Each trigger's plain name (``Trigger.value`` goes through the enum's descriptor each time).
_TRIGGER_NAMES: dict[Trigger, str] = {trigger: str(trigger.value) for trigger in Trigger}


# --- the core ----------------------------------------------------------------------------


class FlowCore(DeviceSteps):
    """The protocol of one spec's flows, for one client at given endpoints: pure functions.

    ``device_compiled`` is the ``device`` preset compiled (for a spec with ``device:``);
    ``metadata`` what discovery said about the issuer; ``client_key`` the client's key
    for ``private_key_jwt``. The driver reads files and documents; the core only uses them.
    """

    def __init__(
        self,
        spec: FlowSpec,
        compiled: CompiledFlow,
        client: Client,
        endpoints: Mapping[str, str],
        *,
        user_agent: str = "flowengine",
        device_compiled: CompiledFlow | None = None,
        metadata: ProviderMetadata | None = None,
        client_key: ClientKey | None = None,
    ) -> None:
        self.spec = spec
        self.compiled = compiled
        self.device_compiled = device_compiled
        self.metadata = metadata
        self.client_key = client_key
        self.client = client
        #: Endpoint templates by name: the spec's, re-pointed where the engine was told to.
        self.endpoints = dict(endpoints)
        self.user_agent = user_agent
        self.urls = Endpoints(spec, self.endpoints, client.client_id)
        authorization = spec.authorization
        self._sends_nonce = authorization is not None and any(
            "nonce" in safe_variables(t) for t in authorization.params.values()
        )
        self._spec_file = None if spec.source.startswith("<") else spec.source

    def step(self, flow: Flow | None, event: Input, now: float) -> Step:
        """Feed one input to a flow (None only with ``Begin``); the Step says what follows."""
        if isinstance(event, Begin):
            return self._begin(event, now)
        if isinstance(event, BeginDevice):
            return self.begin_device(event, now)
        if flow is None:
            raise FlowStateError(f"{type(event).__name__} needs a flow")
        match event:
            case Callback():
                return self._callback(flow, event, now)
            case Exchange():
                return self._exchange(flow, now, event.assertion_id)
            case Answer():
                return self.poll_answer(flow, event, now) if flow.device else self._answer(flow, event, now)
            case KeysAnswer():
                return self.with_keys(flow, event, now)
            case AccountAnswer():
                if self.spec.openid is not None:
                    return self.with_userinfo(flow, event, now)
                token = self.with_account(event.token, event.response, self.default_account(flow))
                return self._fire(flow, Trigger.ANSWER, now, token=token)
            case SendFailed():
                if flow.device is not None:
                    return Step(flow, poll="pending")  # the device code is good until it expires
                return self._send_failed(flow, event.error, now)
            case Interrupt():
                error = ProviderError(
                    "an earlier exchange of this code was interrupted; codes are single-use",
                    code=ErrorCode.EXCHANGE_INTERRUPTED,
                    flow_id=flow.id,
                )
                return self._fire(flow, Trigger.INTERRUPT, now, error=error)
            case Expire():
                return self.expire_device(flow, now) if flow.device else self._expire(flow, now)
        raise AssertionError(f"unknown input {event!r}")  # pragma: no cover

    # --- start -------------------------------------------------------------------------

    def parts(self) -> tuple[AuthorizationRequest, MachineSpec]:
        """The authorization request and machine; a grant-only spec has neither."""
        if self.spec.authorization is None or self.spec.machine is None:
            raise ConfigError(
                f"spec {self.spec.name!r} is grant-only: it has no authorization flow; use grant()",
                code=ErrorCode.GRANT_ONLY_SPEC,
            )
        return self.spec.authorization, self.spec.machine

    def _begin(self, begin: Begin, now: float) -> Step:
        authorization, machine = self.parts()
        fresh = begin.secrets
        challenge = _security.pkce_challenge(fresh.verifier) if fresh.verifier else None
        scope = begin.scope or self.default_scope()
        values = {
            **begin.inputs,
            **begin.connection,
            "client_id": self.client.client_id,
            "redirect_uri": begin.redirect_uri,
            "scope": scope,
            "state": fresh.state,
            "nonce": fresh.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256" if challenge else None,
        }
        endpoint = self.endpoint_url(authorization.endpoint, begin.connection)
        query = encode_query(render_params(authorization.params, values), authorization.unescaped)
        flow = Flow(
            id=fresh.flow_id,
            spec=self.spec.name,
            state=machine.initial,
            created_at=now,
            expires_at=now + machine.ttl,
            client_id=self.client.client_id,
            redirect_uri=begin.redirect_uri,
            state_hash=_security.digest(fresh.state),
            scope=scope,
            session_hash=_security.digest(begin.session) if begin.session is not None else None,
            subject=begin.subject,
            code_verifier=fresh.verifier,
            connection=dict(begin.connection),
            endpoints=self.urls.for_flow(begin.connection),
            nonce_hash=_security.digest(fresh.nonce) if fresh.nonce and self._sends_nonce else None,
            history=(HistoryEntry(now, "start", "", machine.initial),),
        )
        shown = evolve(flow, authorization_url=with_params(endpoint, query, authorization))
        return Step(shown, (SaveFlow(flow, None),), event="start", source="")

    def default_scope(self) -> str | None:
        """The scope asked for when the caller names none (``authorization.default_scopes``)."""
        authorization = self.spec.authorization
        if authorization is None or not authorization.default_scopes:
            return None
        return authorization.scope_separator.join(authorization.default_scopes)

    def connection(self, given: Mapping[str, str] | None) -> dict[str, str]:
        """The spec's connection values from ``given``: checked, with defaults (``connection_invalid``)."""
        refuse_bad_text(connection=given)
        values = _variables.connection_values(self.spec, given)
        self.urls.for_flow(values)  # every endpoint they fill must be a good URL
        return values

    # --- callback ----------------------------------------------------------------------

    def _callback(self, flow: Flow, callback: Callback, now: float) -> Step:
        """Act on a callback, or refuse it (``CallbackError``) having changed nothing."""
        params = callback.params
        self.check_owner(flow)
        if flow.session_hash is not None and not _security.digests_equal(
            flow.session_hash, _security.digest(callback.session) if callback.session is not None else None
        ):
            raise CallbackError(
                "the callback comes from another session", code=ErrorCode.SESSION_MISMATCH, flow_id=flow.id
            )
        self._check_issuer(params.iss, flow)
        this_callback = _callbacks.callback_digest(params)
        needed = bool(params.code) and not params.error
        kept = _variables.kept_values(self.spec, params.kept, needed=needed) if self.spec.kept_names else {}
        if not self.machine_of(flow).can_fire(flow.state, Trigger.CALLBACK):
            if flow.callback_digest is None:
                raise _expired(flow)  # it left the callback's state with no callback: its ttl ran out
            if not _security.digests_equal(flow.callback_digest, this_callback):
                raise CallbackError("this state was already used", code=ErrorCode.STATE_USED, flow_id=flow.id)
            return Step(flow)  # the same callback again: its outcome is the flow's
        if now >= flow.expires_at:
            expired = self._expire(flow, now)
            return evolve(expired, error=_expired(flow))
        error = _callbacks.callback_error(params, self.spec.callback)
        return self._fire(
            flow, Trigger.CALLBACK, now, params=params, error=error, callback_digest=this_callback, kept=kept
        )

    def check_owner(self, flow: Flow) -> None:
        """Refuse a flow that is not this engine's to finish (SECURITY.md 4).

        Engines of one spec may share a store with different clients (production
        and staging): a flow is bound to its spec and its client, so its code only
        ever goes to the token endpoint, with the credentials, it was issued for.
        """
        reason = None
        if flow.spec != self.spec.name:
            reason = f"this callback belongs to a {flow.spec!r} flow, not {self.spec.name!r}"
        elif flow.client_id != self.client.client_id:
            reason = "this callback belongs to a flow of another client of this provider"
        if reason is not None:
            raise CallbackError(reason, code=ErrorCode.WRONG_PROVIDER, flow_id=flow.id)
        # Flows stored before endpoints were recorded carry none; every flow since carries its own.
        if self.urls.bound_elsewhere(flow.connection, flow.endpoints):
            raise CallbackError(
                "this flow was started at other endpoints (another tenant, or another deployment) "
                "than this engine's: its code goes nowhere else",
                code=ErrorCode.ENDPOINTS_MISMATCH,
                flow_id=flow.id,
            )

    def _check_issuer(self, iss: str | None, flow: Flow) -> None:
        flow_id = flow.id
        issuer = self.spec.issuer
        if issuer is None or not self.spec.callback.iss:
            return
        expected = _templates.render(issuer, flow.connection) if "{" in issuer else issuer
        if iss is None and self.spec.callback.iss_required:
            raise CallbackError(
                "the callback carries no issuer", code=ErrorCode.ISSUER_MISMATCH, flow_id=flow_id
            )
        if iss is not None and iss != expected:
            raise CallbackError(
                "the callback names another issuer (a mix-up attack?)",
                code=ErrorCode.ISSUER_MISMATCH,
                flow_id=flow_id,
            )

    # --- exchange ----------------------------------------------------------------------

    def is_final(self, flow: Flow) -> bool:
        """True when the flow's own machine (the device preset for a device flow) has it final."""
        return self.machine_of(flow).is_final(flow)

    def exchangeable(self, flow: Flow) -> bool:
        """True for a flow whose code its machine can exchange now, or one found mid-exchange.

        Mid-exchange is where the machine can fire ``interrupt``: an exchange was begun
        there. A device flow's machine has neither trigger: it is polled, not exchanged.
        """
        machine = self.machine_of(flow)
        return machine.can_fire(flow.state, Trigger.EXCHANGE) or self._in_flight(flow)

    def _in_flight(self, flow: Flow) -> bool:
        return self.machine_of(flow).can_fire(flow.state, Trigger.INTERRUPT)

    def _exchange(self, flow: Flow, now: float, assertion_id: str | None = None) -> Step:
        """Begin the exchange: move to the machine's in-flight state, then send the code once."""
        self.check_owner(flow)
        if self.is_final(flow):
            return Step(flow)
        if not self.exchangeable(flow):
            raise FlowStateError(f"a {flow.state!r} flow cannot be exchanged", flow_id=flow.id)
        if self._in_flight(flow):
            # Found in flight while we hold the lease: whoever sent it is gone.
            return self.step(flow, Interrupt(), now)
        if now >= flow.expires_at and self.machine_of(flow).can_fire(flow.state, Trigger.EXPIRE):
            return self._expire(flow, now)
        begun = self._fire(flow, Trigger.EXCHANGE, now)
        request, secrets_sent = self.exchange_request(flow, now=now, assertion_id=assertion_id)
        return evolve(begun, intents=(*begun.intents, SendRequest(request, secrets_sent)))

    def exchange_request(
        self, flow: Flow, *, now: float | None = None, assertion_id: str | None = None
    ) -> tuple[HttpRequest, tuple[str, ...]]:
        """The token request that spends the flow's code, and the secrets it carries."""
        values = {
            **flow.connection,
            **flow.kept,
            "code": flow.code,
            "code_verifier": flow.code_verifier,
            "redirect_uri": flow.redirect_uri,
            "scope": flow.scope,
        }
        return self.token_request("authorization_code", values, now=now, assertion_id=assertion_id)

    def _answer(self, flow: Flow, answer: Answer, now: float) -> Step:
        token: Token | None = None
        error: FlowError | None = None
        try:
            token = self.read_token(
                answer.response,
                now,
                grant="authorization_code",
                sent=answer.sent_secrets,
                default_account=self.default_account(flow),
                connection=flow.connection,
                kept=flow.kept,
                requested_scope=flow.scope,
                keep_id_token=True,
            )
        except ProviderError as exc:
            error = exc
        if token is not None and self.spec.openid is not None:
            return self.await_keys(flow, token, now)  # its ID token is validated first
        ask = None if token is None else self.account_request(token)
        if ask is not None:
            return Step(flow, (ask,), held=token)  # the account comes from userinfo first
        return self._fire(flow, Trigger.ANSWER, now, token=token, error=error)

    def account_request(self, token: Token) -> SendRequest | None:
        """The userinfo GET that names ``token``'s account, when the spec reads the account there."""
        rule = self.spec.token.account
        if rule is None or rule.userinfo is None:
            return None
        headers = {
            "accept": "application/json",
            "authorization": token.authorization_header(),
            "user-agent": self.user_agent,
        }
        url = self.endpoint_url(rule.userinfo, {**token.connection, **token.kept})
        return SendRequest(HttpRequest("GET", url, headers), (token.access_token,))

    def with_account(self, token: Token, response: HttpResponse | None, default: AccountRef) -> Token:
        """``token`` filed under the account the userinfo answer names.

        A userinfo endpoint that fails or answers nonsense must not lose a token the
        provider issued (its code is spent): it is then filed under ``default`` (the
        flow's subject, or the flow; SECURITY.md 32), never under the client alone.
        """
        rule = self.spec.token.account
        account = default
        if rule is not None and response is not None:
            try:
                account = read_account_response(rule, response)
            except ProviderError:
                account = default
        return evolve(token, account=account)

    def _send_failed(self, flow: Flow, error: TransportError, now: float) -> Step:
        if not error.sent:
            # Nothing reached the server: the code is unspent, the flow may try again.
            unsent = self._fire(flow, Trigger.UNSENT, now)
            return evolve(unsent, error=error)
        return self._fire(flow, Trigger.ANSWER, now, error=error)

    def _expire(self, flow: Flow, now: float) -> Step:
        if not self.machine_of(flow).can_fire(flow.state, Trigger.EXPIRE):
            return Step(flow)
        error = CallbackError("the flow expired", code=ErrorCode.FLOW_EXPIRED, flow_id=flow.id)
        return self._fire(flow, Trigger.EXPIRE, now, error=error)

    # --- tokens ------------------------------------------------------------------------

    def default_account(self, flow: Flow) -> AccountRef:
        """Whose token a flow obtains when the provider's answer names no account (SECURITY.md 32).

        The caller's ``subject`` when given, else the flow itself: never the client
        alone, which would file every person's token under one key.
        """
        if flow.subject is not None:
            return AccountRef("subject", flow.subject)
        return AccountRef("flow", flow.id)

    # --- plumbing ----------------------------------------------------------------------

    def settled(self, flow: Flow) -> Flow:
        """A flow read from the store, its ``outcome`` as its machine says (``CompiledFlow.settle``).

        Another spec's flow (a shared store) is left as it is: its owner judges it.
        """
        return self.machine_of(flow).settle(flow) if flow.spec == self.spec.name else flow

    def machine_of(self, flow: Flow) -> CompiledFlow:
        """The machine a flow runs on: the ``device`` preset for a device flow, else the spec's."""
        if flow.device is not None and self.device_compiled is not None:
            return self.device_compiled
        return self.compiled

    def _fire(
        self,
        flow: Flow,
        event: Trigger,
        now: float,
        *,
        params: CallbackParams | None = None,
        token: Token | None = None,
        error: FlowError | None = None,
        callback_digest: str | None = None,
        kept: Mapping[str, str] | None = None,
    ) -> Step:
        """Fire ``event`` on the machine and build the flow it leads to, with the intents to save it."""
        name = _TRIGGER_NAMES[event]  # records and observers get the plain name
        ctx = TransitionContext(self.spec, flow, name, params=params, token=token, error=error)
        machine = self.machine_of(flow)
        dest = machine.fire(ctx)
        changes = dict(ctx.changes)
        recorded = changes.get("error")
        entry = HistoryEntry(
            now, name, flow.state, dest, recorded.code if isinstance(recorded, ErrorInfo) else None
        )
        changes.update(
            state=dest,
            version=flow.version + 1,
            outcome=machine.outcome_of(dest),
            history=(*flow.history, entry),
        )
        if callback_digest is not None:
            changes["callback_digest"] = callback_digest
        if kept:
            changes["kept"] = dict(kept)
        moved = evolve(flow, **changes)
        intents: tuple[Intent, ...] = (SaveFlow(moved, flow.version),)
        if ctx.save_token and token is not None:
            # Token first: a crash before the flow is saved leaves the flow in flight
            # (then interrupted), never a token lost.
            intents = (SaveToken(token), *intents)
        return Step(moved, intents, event=name, source=flow.state)


def _expired(flow: Flow) -> CallbackError:
    return CallbackError("the flow expired before its callback", code=ErrorCode.FLOW_EXPIRED, flow_id=flow.id)
