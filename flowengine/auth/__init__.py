"""Using tokens: HTTP client auth that attaches an engine's token and keeps it fresh.

``HttpxAuth`` (an ``httpx.Auth``, sync and async), ``AiohttpAuth`` (an aiohttp client
middleware) and ``RequestsAuth`` (a ``requests`` auth) share one behaviour: the
spec's header form (``token.authorization_header()``), a refresh through the
engine's single-flight ``refresh()`` when the token expires within ``margin``
seconds, the token sent only to the origin of the first request (SECURITY 37), one
refresh and one retry after a 401 from that origin, no retry of a body that cannot
be replayed, and the engine's typed error for a dead grant. See docs/using-tokens.md.

Each class imports its HTTP library on first use (``import flowengine.auth`` imports
none of them): requests is optional (the ``auth`` extra), aiohttp is heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowengine import lazy_exports

if TYPE_CHECKING:
    from ._aiohttp import AiohttpAuth
    from ._httpx import HttpxAuth
    from ._requests import RequestsAuth

__all__ = ["AiohttpAuth", "HttpxAuth", "RequestsAuth"]

__getattr__ = lazy_exports(
    __name__,
    {"AiohttpAuth": "._aiohttp", "HttpxAuth": "._httpx", "RequestsAuth": "._requests"},
)
