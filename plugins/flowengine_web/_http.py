"""HTTP plumbing: the security headers on every response, and content negotiation.

The headers are set by a middleware, so they are on redirects, 404s and JSON
as well as on pages. A header the response already has is left alone: a host
app's ``render`` hook may return a Response with its own Content-Security-Policy.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowengine_web._pages import CONTENT_SECURITY_POLICY

__all__ = ["SECURITY_HEADERS", "SecurityHeadersMiddleware", "wants_json"]

#: What each response of the frontend carries, and why (docs/web.md explains each).
SECURITY_HEADERS: Mapping[str, str] = {
    # The callback URL holds the code: no page may send it on as a Referer.
    "Referrer-Policy": "no-referrer",
    # Results are per person and per session: no shared or back-forward cache keeps them.
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Vary": "Accept, Cookie",
}


#: ``SECURITY_HEADERS`` as ASGI raw headers, made once.
_RAW_HEADERS = tuple(
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in SECURITY_HEADERS.items()
)


class SecurityHeadersMiddleware:
    """ASGI middleware: add ``SECURITY_HEADERS`` to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [pair for pair in _RAW_HEADERS if pair[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _preference(accept: str, media_type: str) -> tuple[float, int]:
    """The q-value ``accept`` gives ``media_type``, and how specific the range that gave it is.

    The most specific range wins (``type/sub`` over ``type/*`` over ``*/*``), as RFC 9110 says.
    """
    major = media_type.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)
    for item in accept.split(","):
        parts = [part.strip() for part in item.split(";")]
        candidate = parts[0].lower()
        q = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        rank = {media_type: 2, f"{major}/*": 1, "*/*": 0}.get(candidate, -1)
        if rank > best[0]:
            best = (rank, q)
    return best[1], best[0]


def wants_json(request: Request) -> bool:
    """True when the client prefers ``application/json`` to ``text/html`` (a browser never does).

    On equal q-values the more specific range decides, so ``application/json, */*``
    (what fetch libraries send) gets JSON and ``*/*`` alone gets HTML.
    """
    return _prefers_json(request.headers.get("accept", ""))


@functools.lru_cache(maxsize=64)
def _prefers_json(accept: str) -> bool:
    """``wants_json`` for an Accept header: a client sends the same one each time, so it is remembered."""
    if not accept:
        return False
    json_pref = _preference(accept, "application/json")
    return json_pref[0] > 0 and json_pref > _preference(accept, "text/html")
