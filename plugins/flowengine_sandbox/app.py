"""The sandbox as a Starlette app: a fake Podio authorization server, and any spec's provider.

Podio's own routes (``/oauth/...``, ``/user/status``) keep its rate limits and
error envelope; every other spec registered with the app is emulated from the spec
itself under ``/_e/`` (``_emulator``).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from flowengine_sandbox._admin import (
    expire_tokens,
    fault_plan,
    register_apps,
    register_spec,
    reset,
    token_requests,
    update_settings,
)
from flowengine_sandbox._authorize import authorize_decision, authorize_page
from flowengine_sandbox._device import device_decision, device_page
from flowengine_sandbox._emulator import emulated
from flowengine_sandbox._resource import user_status
from flowengine_sandbox._token import token_form, token_json
from flowengine_sandbox._web import PodioError, handle_podio_error
from flowengine_sandbox.faults import FaultInjection
from flowengine_sandbox.ratelimit import RateLimiting, counters
from flowengine_sandbox.settings import SandboxSettings
from flowengine_sandbox.state import SandboxState

__all__ = ["create_app"]

# Podio's requests are small; a larger body is a client bug (or an attack).
MAX_BODY_SIZE = 64 * 1024


def create_app(settings: SandboxSettings | None = None, state: SandboxState | None = None) -> Starlette:
    """Return the sandbox app; its settings and state are on `app.state.sandbox_*`."""
    routes = [
        Route("/oauth/authorize", authorize_page, methods=["GET"]),
        Route("/oauth/authorize", authorize_decision, methods=["POST"]),
        Route("/oauth/token/v2", token_json, methods=["POST"]),
        Route("/oauth/token", token_form, methods=["POST"]),
        Route("/user/status", user_status, methods=["GET"]),
        Route("/_sandbox/token-requests", token_requests, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/settings", update_settings, methods=["POST"]),
        Route("/_sandbox/expire", expire_tokens, methods=["POST"]),
        Route("/_sandbox/faults", fault_plan, methods=["GET", "POST"]),
        Route("/_sandbox/counters", counters, methods=["GET"]),
        Route("/_sandbox/apps", register_apps, methods=["POST"]),
        Route("/_sandbox/specs", register_spec, methods=["POST"]),
        Route("/_e/{spec}/_device", device_page, methods=["GET"]),
        Route("/_e/{spec}/_device", device_decision, methods=["POST"]),
        Route("/_e/{spec}/{endpoint}/{rest:path}", emulated, methods=["GET", "POST", "DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={PodioError: handle_podio_error},
        max_body_size=MAX_BODY_SIZE,
    )
    app.add_middleware(FaultInjection)  # settings.faults decides which requests fail (faults.py)
    # Added last, so outermost: every call counts against Podio's limits, faulted ones too.
    app.add_middleware(RateLimiting)
    app.state.sandbox_settings = SandboxSettings() if settings is None else settings
    app.state.sandbox_state = SandboxState() if state is None else state
    app.state.sandbox_specs = {}  # name -> FlowSpec, for the specs emulated under /_e/
    return app
