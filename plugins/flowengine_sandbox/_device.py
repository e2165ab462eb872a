"""The device authorization grant (RFC 8628) of any emulated spec that declares one.

The spec's device endpoint answers a device code, a user code and the verification
URI: the page ``/_e/SPEC/_device`` where the person (or a test, or ``login --device
--sandbox``) types the user code and approves or denies. A poll of the spec's device
grant then hears ``authorization_pending``, ``slow_down``, ``access_denied``,
``expired_token`` or a token, as the person decided or as the settings force
(``device``: ask, approve, deny, expire; ``device_slow_down``: that many of the next polls
answered ``slow_down``).
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl

from flowengine import FlowSpec
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from flowengine_sandbox._web import NO_STORE, settings_of, state_of
from flowengine_sandbox.settings import RegisteredClient
from flowengine_sandbox.state import DeviceCode

__all__ = ["DeviceRefused", "device_authorization", "device_decision", "device_page", "device_poll"]

#: RFC 8628 §6.1: no vowels or look-alikes, so a user code spells nothing and reads unambiguously.
_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


class DeviceRefused(Exception):
    """A poll that does not get a token: its RFC 8628 ``error`` and a description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description = error, description


def _user_code() -> str:
    letters = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def device_authorization(
    request: Request, spec: FlowSpec, client: RegisteredClient, fields: Mapping[str, str], audience: str
) -> JSONResponse:
    """RFC 8628 §3.2: a device code for the client, and what to show the person."""
    settings = settings_of(request)
    scope = fields.get("scope") or spec.scope_separator.join(
        spec.authorization.default_scopes if spec.authorization else ()
    )
    user_code = _user_code()
    device = DeviceCode(
        client.client_id, scope, user_code, settings.clock() + settings.device_ttl, audience=audience
    )
    page = str(request.base_url).rstrip("/") + f"/_e/{spec.name}/_device"
    body = {
        "device_code": state_of(request).issue_device(device),
        "user_code": user_code,
        "verification_uri": page,
        "verification_uri_complete": f"{page}?user_code={user_code}",
        "expires_in": settings.device_ttl,
        "interval": settings.device_interval,
    }
    return JSONResponse(body, headers=NO_STORE)


def device_poll(request: Request, device_code: str, client: RegisteredClient, audience: str) -> DeviceCode:
    """The device authorization a poll redeems, or ``DeviceRefused`` with what RFC 8628 §3.5 answers."""
    settings, state = settings_of(request), state_of(request)
    device = state.device(device_code)
    if device is None or device.client_id != client.client_id or device.audience != audience:
        raise DeviceRefused("invalid_grant", "The device code is not valid")
    decided = {"approve": True, "deny": False}.get(settings.device, device.approved)
    if settings.device == "expire" or settings.clock() >= device.expires_at:
        raise DeviceRefused("expired_token", "The device code has expired")
    if settings.device_slow_down > 0:  # the next polls are too fast, whatever the person decided
        settings.device_slow_down -= 1
        raise DeviceRefused("slow_down", "Polling too fast: wait 5 seconds more")
    if decided is None:
        raise DeviceRefused("authorization_pending", "The person has not decided yet")
    if not decided:
        raise DeviceRefused("access_denied", "The person denied the device")
    state.spend_device(device_code)
    return device


async def device_page(request: Request) -> HTMLResponse:
    """GET /_e/SPEC/_device: the verification page, the user code filled in when the URI has it."""
    escape = html.escape
    user_code = request.query_params.get("user_code", "")
    spec = escape(request.path_params["spec"])
    page = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Connect a device - {spec} sandbox</title></head>
<body>
<main>
  <h1>Connect a device</h1>
  <p>Signed in as {escape(settings_of(request).user.email)}</p>
  <form method="post" action="{escape(request.url.path)}">
    <label>Code <input name="user_code" value="{escape(user_code)}"></label>
    <button name="decision" value="grant">Grant</button>
    <button name="decision" value="deny">Deny</button>
  </form>
</main>
</body>
</html>
"""
    headers = {**NO_STORE, "Content-Security-Policy": "default-src 'none'", "X-Frame-Options": "DENY"}
    return HTMLResponse(page, headers=headers)


async def device_decision(request: Request) -> Response:
    """POST /_e/SPEC/_device: the person's decision for a user code; 303 back to the page when known."""
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    user_code, decision = form.get("user_code", ""), form.get("decision", "")
    if not state_of(request).decide_device(user_code, approve=decision == "grant"):
        return HTMLResponse("<p>No device is waiting for this code.</p>", status_code=404, headers=NO_STORE)
    done = f"{request.url.path}?done={'granted' if decision == 'grant' else 'denied'}"
    return Response(status_code=303, headers={**NO_STORE, "Location": done})
