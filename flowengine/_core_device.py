"""The device authorization grant (RFC 8628) in the core: its requests, its answers, its steps (pure).

A device flow has no redirect: the driver sends the device authorization request
(``device_request``), and the answer (``read_device_answer``) begins the flow
(``BeginDevice``) in the ``device`` preset's ``requested`` state, holding the device
code (a secret) and what the person is shown (the user code, the verification URI).
The driver then polls the token endpoint; each answer goes back in as ``Answer``:

- ``authorization_pending`` (and a 429/5xx): nothing moves, ``Step.poll`` is ``pending``;
- ``slow_down``: nothing moves, ``Step.poll`` is ``slow_down`` (the driver adds 5 s, §3.5);
- ``access_denied``: ``answer`` moves the flow to ``denied``;
- ``expired_token``: ``expire`` moves it to ``expired`` (``device_code_expired``);
- a token: ``answer`` to ``granted`` (after its ID token, for an ``openid`` spec);
- anything else: ``answer`` to ``failed``.

``Expire`` (the device code's lifetime ran out while polls were pending) moves it to
``expired`` (``device_pending_timeout``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowengine import _security
from flowengine._answer import answer_body
from flowengine._core_openid import OpenIdSteps
from flowengine._errors import ConfigError, ErrorCode, FlowStateError, ProviderError
from flowengine._http import HttpRequest, HttpResponse
from flowengine._machine import CompiledFlow
from flowengine._oidc_http import url_problem
from flowengine._presets import Trigger
from flowengine._records import AccountRef, DeviceAuthorization, Flow, HistoryEntry
from flowengine._spec import DeviceRequest
from flowengine._spec_check import MAX_FLOW_TTL
from flowengine._steps import Answer, BeginDevice, SaveFlow, Step
from flowengine._tokens import error_response

__all__ = ["DEFAULT_INTERVAL", "SLOW_DOWN", "DeviceSteps"]

#: Seconds between polls when the provider names no ``interval`` (RFC 8628 §3.2).
DEFAULT_INTERVAL = 5
#: Seconds a ``slow_down`` adds to the interval, for this poll and every later one (§3.5).
SLOW_DOWN = 5
_MAX_INTERVAL = 600
_DEVICE_CODE = re.compile(r"[\x21-\x7e]{1,2048}")
#: A user code is typed by a person: visible ASCII (and inner spaces), short.
_USER_CODE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?")


def _invalid(message: str, status: int) -> ProviderError:
    return ProviderError(message, code=ErrorCode.INVALID_DEVICE_RESPONSE, status=status)


def _seconds(body: Mapping[str, Any], name: str, status: int, default: int | None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _invalid(f"the device authorization answer's {name} is not a positive whole number", status)
    return value


def _uri(body: Mapping[str, Any], names: tuple[str, ...], status: int, *, required: bool) -> str | None:
    """A verification URI the person is shown: judged as every endpoint is (SECURITY.md 27)."""
    value = next((body[name] for name in names if name in body), None)
    if value is None and not required:
        return None
    if not isinstance(value, str) or url_problem(value) is not None:
        raise _invalid(f"the device authorization answer's {names[0]} is not a safe https URL", status)
    return value


def parse_device_answer(response: HttpResponse) -> tuple[DeviceAuthorization, int]:
    """The device authorization a 2xx answer holds, and the device code's lifetime (seconds)."""
    status = response.status
    body = answer_body(response.body, response.content_type)
    if not isinstance(body, dict):
        raise _invalid(f"the device authorization endpoint answered {status} without a JSON object", status)
    device_code, user_code = body.get("device_code"), body.get("user_code")
    if not isinstance(device_code, str) or not _DEVICE_CODE.fullmatch(device_code):
        raise _invalid("the device authorization answer has no usable device_code", status)
    if not isinstance(user_code, str) or not _USER_CODE.fullmatch(user_code):
        raise _invalid("the device authorization answer has no user_code a person can type", status)
    # Google names it verification_url (RFC 8628's draft name); it means the same.
    verification = _uri(body, ("verification_uri", "verification_url"), status, required=True)
    assert verification is not None
    complete = _uri(body, ("verification_uri_complete",), status, required=False)
    interval = _seconds(body, "interval", status, DEFAULT_INTERVAL)
    if interval > _MAX_INTERVAL:
        raise _invalid(f"the device authorization answer's interval is over {_MAX_INTERVAL} s", status)
    lifetime = min(_seconds(body, "expires_in", status, None), MAX_FLOW_TTL)
    return DeviceAuthorization(user_code, verification, complete, interval, device_code), lifetime


class DeviceSteps(OpenIdSteps):
    """The device flow's part of ``FlowCore`` (RFC 8628).

    Its requests and answers are token requests (``TokenRequests``), and a device flow of an
    ``openid`` spec validates its ID token as a redirect flow does (``OpenIdSteps``).
    """

    #: The ``device`` preset, compiled with the engine's guards and actions.
    device_compiled: CompiledFlow | None

    if TYPE_CHECKING:

        def default_account(self, flow: Flow) -> AccountRef: ...

        def machine_of(self, flow: Flow) -> CompiledFlow: ...

    def device_rules(self) -> DeviceRequest:
        """The spec's ``device`` section, or ``device_unsupported``."""
        if self.spec.device is None or self.device_compiled is None:
            raise ConfigError(
                f"spec {self.spec.name!r} describes no device authorization grant (no device: section)",
                code=ErrorCode.DEVICE_UNSUPPORTED,
            )
        return self.spec.device

    def device_request(
        self, scope: str | None, connection: Mapping[str, str], *, now: float, assertion_id: str
    ) -> tuple[HttpRequest, tuple[str, ...]]:
        """The device authorization request (RFC 8628 §3.1), and the secrets it carries."""
        rule = self.device_rules()
        values = {**connection, "scope": scope}
        url = self.endpoint_url(rule.endpoint, self.client_values(values))
        return self.authenticated_request(rule, url, values, now, assertion_id)

    def read_device_answer(
        self, response: HttpResponse, *, now: float, sent: tuple[str, ...] = ()
    ) -> tuple[DeviceAuthorization, int]:
        """The device authorization in the answer and its lifetime, or the ``ProviderError`` it is."""
        if not 200 <= response.status < 300:
            raise error_response(self.spec, response, now=now, sent=sent, endpoint="device authorization")
        return parse_device_answer(response)

    def begin_device(self, begin: BeginDevice, now: float) -> Step:
        """A new device flow in the preset's initial state, holding its device code until it ends."""
        self.device_rules()
        assert self.device_compiled is not None
        initial = self.device_compiled.initial
        fresh = begin.secrets
        flow = Flow(
            id=fresh.flow_id,
            spec=self.spec.name,
            state=initial,
            created_at=now,
            expires_at=now + min(begin.expires_in, MAX_FLOW_TTL),
            client_id=self.client.client_id,
            redirect_uri="",
            state_hash=_security.digest(fresh.state),
            scope=begin.scope,
            subject=begin.subject,
            connection=dict(begin.connection),
            endpoints=self.urls.for_flow(begin.connection),
            device=begin.authorization,
            history=(HistoryEntry(now, "start", "", initial),),
        )
        return Step(flow, (SaveFlow(flow, None),), event="start", source="")

    def poll_request(
        self, flow: Flow, *, now: float, assertion_id: str
    ) -> tuple[HttpRequest, tuple[str, ...]]:
        """The token request one poll sends (RFC 8628 §3.4), with the flow's device code."""
        rule = self.device_rules()
        device_code = flow.device.device_code if flow.device is not None else None
        if device_code is None:
            raise FlowStateError("this device flow holds no device code (it has ended)", flow_id=flow.id)
        values = {**flow.connection, "device_code": device_code}
        return self.token_request(rule.grant, values, now=now, assertion_id=assertion_id)

    def poll_answer(self, flow: Flow, answer: Answer, now: float) -> Step:
        """What one poll's answer does: nothing yet (``Step.poll``), or the flow's end."""
        rule = self.device_rules()
        try:
            token = self.read_token(
                answer.response,
                now,
                grant=rule.grant,
                sent=answer.sent_secrets,
                default_account=self.default_account(flow),
                connection=flow.connection,
                requested_scope=flow.scope,
                keep_id_token=True,
            )
        except ProviderError as exc:
            return self._poll_error(flow, exc, now)
        if self.spec.openid is not None:
            return self.await_keys(flow, token, now)
        return self._fire(flow, Trigger.ANSWER, now, token=token)

    def _poll_error(self, flow: Flow, exc: ProviderError, now: float) -> Step:
        said = exc.provider_error
        if said == "slow_down":
            return Step(flow, poll="slow_down")
        if said == "authorization_pending" or exc.retryable:
            return Step(flow, poll="pending")
        if said == "expired_token":
            expired = ProviderError(
                "the device code expired before the person approved it",
                code=ErrorCode.DEVICE_CODE_EXPIRED,
                status=exc.status,
                body=exc.body,
                flow_id=flow.id,
            )
            return self._fire(flow, Trigger.EXPIRE, now, error=expired)
        if said == "access_denied":
            denied = ProviderError(
                "the person denied the device's request",
                code=ErrorCode.ACCESS_DENIED,
                status=exc.status,
                body=exc.body,
                flow_id=flow.id,
            )
            return self._fire(flow, Trigger.ANSWER, now, error=denied)
        return self._fire(flow, Trigger.ANSWER, now, error=exc)

    def expire_device(self, flow: Flow, now: float) -> Step:
        """The device code's lifetime ran out while the polls were pending."""
        if not self.machine_of(flow).can_fire(flow.state, Trigger.EXPIRE):
            return Step(flow)
        error = ProviderError(
            "the device code's lifetime ran out before the person approved it",
            code=ErrorCode.DEVICE_PENDING_TIMEOUT,
            flow_id=flow.id,
        )
        return self._fire(flow, Trigger.EXPIRE, now, error=error)
