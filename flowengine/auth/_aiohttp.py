"""``AiohttpAuth``: an aiohttp client middleware that attaches an engine's token and keeps it fresh.

aiohttp 3.12 added client middlewares (``ClientSession(middlewares=...)``), the seam
its own ``DigestAuthMiddleware`` uses: a middleware gets each ``ClientRequest`` and
the next handler, and may send the same request again.
"""

from __future__ import annotations

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, hdrs

from flowengine import AsyncEngine, Engine
from flowengine.auth._keeper import DEFAULT_MARGIN, TokenKeeper, refreshes_after, should_retry

__all__ = ["AiohttpAuth"]


def _replayable(request: ClientRequest) -> bool:
    """Bytes, text, JSON and url-encoded forms aiohttp holds in memory can be sent again.

    An async generator, a stream, a file or a multipart writer is read as it is
    sent: not replayed.
    """
    body = request.body
    return body == b"" or (isinstance(body, aiohttp.BytesPayload) and not body.consumed)


class AiohttpAuth:
    """Sends each request with the token under ``key``, refreshed ahead of expiry and after a 401.

    ``aiohttp.ClientSession(middlewares=(AiohttpAuth(engine, key=token.key),))``,
    with an ``AsyncEngine`` (or a sync ``Engine``, whose calls then run on a worker
    thread). aiohttp runs middlewares again for every redirect, after it has
    stripped ``Authorization`` from a cross-origin one; so, like aiohttp's own
    ``DigestAuthMiddleware``, the token goes only to the origin of the first request
    the middleware authenticates, and every other origin's requests pass through
    untouched. See docs/using-tokens.md.
    """

    def __init__(self, engine: AsyncEngine | Engine, *, key: str, margin: float = DEFAULT_MARGIN) -> None:
        self._keeper = TokenKeeper(engine, key=key, margin=margin)

    def _ours(self, request: ClientRequest) -> bool:
        """True for a request this middleware authenticates: no Authorization, our origin."""
        if hdrs.AUTHORIZATION in request.headers:
            return False  # the caller chose its own credentials
        return self._keeper.serves(str(request.url))

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """Send ``request`` with the token; after a 401, refresh and send it once more."""
        if not self._ours(request):
            return await handler(request)
        sent = await self._keeper.current()
        request.headers[hdrs.AUTHORIZATION] = sent.authorization_header()
        response = await handler(request)
        if not refreshes_after(response.status, sent) or not self._keeper.carried(
            str(response.url), request.headers.get(hdrs.AUTHORIZATION), sent
        ):
            return response
        try:
            fresh = await self._keeper.after_401(sent)
        except BaseException:
            response.release()
            raise
        if not should_retry(sent, fresh, replayable=_replayable(request)):
            return response
        response.release()
        request.headers[hdrs.AUTHORIZATION] = fresh.authorization_header()
        return await handler(request)
