"""The host app's hooks: their types, and running ``on_token`` once per flow.

Each hook may be a plain or an ``async`` function. ``on_token`` has side
effects the host cares about (a welcome mail, a sync job), so it must not run
again when the callback is reloaded, replayed, or delivered to two workers:
a store lease marks it taken, in whatever store the workers share.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar, cast

from flowengine import AsyncEngine, Flow, FlowError, FlowStateError, StoreError, Token
from starlette.requests import Request
from starlette.responses import Response

from flowengine_web._pages import Page

__all__ = [
    "ON_TOKEN_WINDOW",
    "Connection",
    "OnToken",
    "Render",
    "Subject",
    "SuccessUrl",
    "deliver_once",
    "resolve",
]

log = logging.getLogger("flowengine.web")
_T = TypeVar("_T")

#: ``on_token(request, flow, token)``: do something with a new token (once per flow).
OnToken = Callable[[Request, Flow, Token], Awaitable[None] | None]
#: ``success_url(request, flow)``: where to send the person after success (same origin), or None.
SuccessUrl = Callable[[Request, Flow], Awaitable[str | None] | str | None]
#: ``subject(request)``: who the person is in the host app (its user id), or None.
#: Passed to ``start(subject=...)``: the token is filed under it when the provider's
#: answer names no account (SECURITY.md 32).
Subject = Callable[[Request], Awaitable[str | None] | str | None]
#: ``connection(request, spec_name)``: the connection values a flow starts with (a tenant's
#: subdomain, from the signed-in user, a header, the host name...), or None for the query's.
Connection = Callable[[Request, str], Awaitable[Mapping[str, str] | None] | Mapping[str, str] | None]
#: ``render(request, page)``: a Response, an HTML string, or None for the default page.
Render = Callable[[Request, Page], Awaitable[Response | str | None] | Response | str | None]

#: ``on_token`` runs only for a flow exchanged less than this many seconds ago: a
#: callback replayed later still shows its outcome, but delivers nothing again.
ON_TOKEN_WINDOW = 3600.0


async def resolve(value: Awaitable[_T] | _T) -> _T:
    """The value a hook returned, awaited if it is awaitable."""
    if inspect.isawaitable(value):
        return cast(_T, await value)
    return value


async def deliver_once(on_token: OnToken, request: Request, engine: AsyncEngine, flow: Flow) -> None:
    """Run ``on_token`` for an exchanged flow, unless it ran (or is running) already.

    The lease (``flowengine-web:on-token:<flow id>``) outlives the window in
    which a replay may still deliver, so a replay finds it held. When the hook
    fails, the lease is released and the error raised: a reload of the callback
    tries again. Concurrent replays do not wait for the one that runs it.
    """
    exchanged_at = next((h.at for h in reversed(flow.history) if h.dest == flow.state), flow.created_at)
    if engine.clock() - exchanged_at > ON_TOKEN_WINDOW:
        return
    try:
        lease = await engine.store.acquire(f"flowengine-web:on-token:{flow.id}", 2 * ON_TOKEN_WINDOW)
    except FlowError:
        raise
    except Exception as exc:
        raise StoreError(f"the store failed: {type(exc).__name__}") from exc
    if lease is None:
        return
    try:
        token = await engine.token_for(flow)
        if token is None:
            raise FlowStateError("the flow's token is gone from the store", code="token_unknown")
        await resolve(on_token(request, flow, token))
    except BaseException:
        try:
            await engine.store.release(lease)
        except Exception:
            log.warning("web: could not release the on_token lease of flow %s; it will expire", flow.id)
        raise
