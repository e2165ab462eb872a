"""Routes under `/_sandbox/` that let a test in another process drive the sandbox."""

from __future__ import annotations

from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowengine_sandbox._web import invalid_request, read_json_object, settings_of, state_of
from flowengine_sandbox.faults import FaultPlan
from flowengine_sandbox.settings import SandboxApp, SandboxSettings
from flowengine_sandbox.state import TokenKind

__all__ = [
    "ADJUSTABLE_SETTINGS",
    "expire_tokens",
    "fault_plan",
    "register_apps",
    "register_spec",
    "reset",
    "token_requests",
    "update_settings",
]

ADJUSTABLE_SETTINGS = (
    "consent",
    "rotate_refresh_tokens",
    "code_ttl",
    "access_ttl",
    "refresh_ttl",
    "granted_scope",
    "rate_limit",
    "client_rate_limit",
    "rate_limit_window",
    "device",
    "device_slow_down",
    "device_interval",
    "device_ttl",
)


async def token_requests(request: Request) -> JSONResponse:
    """GET /_sandbox/token-requests: the record, oldest first, secrets fingerprinted."""
    return JSONResponse([record.redacted() for record in state_of(request).token_requests()])


async def reset(request: Request) -> Response:
    """POST /_sandbox/reset: forget every code, token and recorded request, and the rate counts."""
    state_of(request).reset()
    settings_of(request).rate_limits.reset()
    return Response(status_code=204)


async def update_settings(request: Request) -> JSONResponse:
    """POST /_sandbox/settings: change the settings named in the JSON body; return them all."""
    settings = settings_of(request)
    changes: dict[str, Any] = await read_json_object(request, allow_empty=True)
    unknown = sorted(set(changes) - set(ADJUSTABLE_SETTINGS))
    if unknown:
        raise invalid_request(f"Unknown setting: {', '.join(unknown)}")
    try:
        attrs.evolve(settings, **changes)  # validates every change before any applies
    except (TypeError, ValueError) as error:
        raise invalid_request(str(error.args[0] if error.args else error)) from None
    for name, value in changes.items():
        setattr(settings, name, value)
    return JSONResponse(_public_settings(settings))


async def expire_tokens(request: Request) -> JSONResponse:
    """POST /_sandbox/expire: expire one token by fingerprint, or every access token."""
    body = await read_json_object(request, allow_empty=True)
    kinds: dict[str, TokenKind] = {
        "access_token_fingerprint": "access",
        "refresh_token_fingerprint": "refresh",
    }
    unknown = sorted(set(body) - set(kinds))
    if unknown or len(body) > 1:
        raise invalid_request(
            'Send {}, {"access_token_fingerprint": ...} or {"refresh_token_fingerprint": ...}'
        )
    now = settings_of(request).clock()
    if not body:
        expired = state_of(request).expire("access", now=now)
    else:
        [(key, value)] = body.items()
        if not isinstance(value, str):
            raise invalid_request(f"{key} must be a string")
        expired = state_of(request).expire(kinds[key], now=now, token_fingerprint=value)
    return JSONResponse({"expired": expired})


async def fault_plan(request: Request) -> JSONResponse:
    """GET or POST /_sandbox/faults: show the fault plan and its record, or replace the plan.

    POST ``{"faults": [...], "seed": N}`` (``{}`` or ``{"faults": []}`` clears it);
    the fields of each fault are those of ``faults.Fault``.
    """
    settings = settings_of(request)
    if request.method == "POST":
        try:
            plan = FaultPlan.from_json(await read_json_object(request, allow_empty=True))
        except (TypeError, ValueError) as error:
            raise invalid_request(str(error)) from None
        settings.faults = plan
    return JSONResponse(settings.faults.to_json())


#: How many apps one request may register (a test of a fleet registers a few thousand).
_MAX_APPS = 100_000


async def register_apps(request: Request) -> JSONResponse:
    """POST /_sandbox/apps: register apps for the app grant, ``{"apps": {"APP_ID": "APP_TOKEN", ...}}``.

    A test in another process uses it to have many accounts (one per app):
    each app's tokens count against its own rate-limit bucket.
    """
    body = await read_json_object(request)
    apps = body.get("apps")
    if set(body) != {"apps"} or not isinstance(apps, dict) or len(apps) > _MAX_APPS:
        raise invalid_request(f'Send {{"apps": {{"APP_ID": "APP_TOKEN", ...}}}} (at most {_MAX_APPS})')
    registered = {}
    for app_id, app_token in apps.items():
        numeric = app_id.isascii() and app_id.isdigit() and len(app_id) <= 12
        if not numeric or not isinstance(app_token, str):
            raise invalid_request("Each app is a numeric app id and its app token (a string)")
        registered[int(app_id)] = SandboxApp(int(app_id), app_token)
    settings_of(request).apps.update(registered)
    return JSONResponse({"registered": len(registered), "apps": len(settings_of(request).apps)})


def _public_settings(settings: SandboxSettings) -> dict[str, object]:
    public: dict[str, object] = {name: getattr(settings, name) for name in ADJUSTABLE_SETTINGS}
    public["clients"] = [
        {"client_id": client.client_id, "registered_domain": client.registered_domain}
        for client in settings.clients.values()
    ]
    return public


async def register_spec(request: Request) -> JSONResponse:
    """POST /_sandbox/specs: emulate the spec in the JSON body (``spec_document``); answer its base URL.

    The spec is judged as ``load_spec`` judges any; a spec of the same name replaces the one before.
    """
    from flowengine import SpecError, load_spec

    document = await read_json_object(request)
    try:
        spec = load_spec(document)
    except SpecError as exc:
        raise invalid_request("; ".join(str(p) for p in exc.problems)[:500]) from None
    request.app.state.sandbox_specs[spec.name] = spec
    return JSONResponse({"name": spec.name, "base": str(request.base_url).rstrip("/") + f"/_e/{spec.name}"})
