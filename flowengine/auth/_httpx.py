"""``HttpxAuth``: an ``httpx.Auth`` that attaches an engine's token and keeps it fresh."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from flowengine import AsyncEngine, Engine, Token
from flowengine.auth._keeper import DEFAULT_MARGIN, TokenKeeper, refreshes_after, should_retry

__all__ = ["HttpxAuth"]


def _replayable(request: httpx.Request) -> bool:
    """Content httpx holds as bytes (``content=b"…"``, ``data=``, ``json=``) can be sent again.

    A generator, a file or a multipart stream is read as it is sent: not replayed.
    """
    return isinstance(request.stream, httpx.ByteStream)


class HttpxAuth(httpx.Auth):
    """Sends each request with the token under ``key``, refreshed ahead of expiry and after a 401.

    ``httpx.Client(auth=HttpxAuth(engine, key=token.key))`` with the sync ``Engine``;
    ``httpx.AsyncClient(auth=...)`` with an ``AsyncEngine`` (or a sync ``Engine``,
    whose calls then run on a worker thread). The token goes only to the origin of
    the first request this auth authenticates; a 401 is acted upon only when it
    comes from that origin to a request that carried the token (httpx runs the
    flow around its redirects, so the answer may be another origin's). See
    docs/using-tokens.md.
    """

    def __init__(self, engine: AsyncEngine | Engine, *, key: str, margin: float = DEFAULT_MARGIN) -> None:
        self._keeper = TokenKeeper(engine, key=key, margin=margin)

    def _ours(self, request: httpx.Request) -> bool:
        """True for a request this auth authenticates: no Authorization of its own, our origin."""
        if "authorization" in request.headers:
            return False  # the caller chose its own credentials
        return self._keeper.serves(str(request.url))

    def _acts_on(self, response: httpx.Response, sent: Token) -> bool:
        """A 401 calls for a refresh only from our origin, to a request that carried ``sent``.

        httpx hands the flow the answer at the end of its redirects: a 401 from a
        redirect's target on another origin goes back to the caller as it is.
        """
        final = response.request
        return refreshes_after(response.status_code, sent) and self._keeper.carried(
            str(final.url), final.headers.get("authorization"), sent
        )

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow for ``httpx.Client``: needs a sync ``Engine`` (``ConfigError`` otherwise)."""
        if not self._ours(request):
            yield request
            return
        sent = self._keeper.current_sync()
        request.headers["Authorization"] = sent.authorization_header()
        response = yield request
        if not self._acts_on(response, sent):
            return
        fresh = self._keeper.after_401_sync(sent)
        if should_retry(sent, fresh, replayable=_replayable(request)):
            request.headers["Authorization"] = fresh.authorization_header()
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow for ``httpx.AsyncClient``."""
        if not self._ours(request):
            yield request
            return
        sent = await self._keeper.current()
        request.headers["Authorization"] = sent.authorization_header()
        response = yield request
        if not self._acts_on(response, sent):
            return
        fresh = await self._keeper.after_401(sent)
        if should_retry(sent, fresh, replayable=_replayable(request)):
            request.headers["Authorization"] = fresh.authorization_header()
            yield request
