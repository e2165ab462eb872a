"""The aiohttp transport: one pooled ``aiohttp.ClientSession``, timeouts, a size cap.

Measured against the httpx transport in ``benchmarks/e2e.py``: at concurrency 50
httpx's connection pool spends most of a request's CPU scanning its
connections (``_assign_requests_to_connections`` is linear in the open
connections, per request), while aiohttp's connector hands out a keep-alive
connection in constant time and parses responses in C. So this transport is
tried first and httpx is the fallback when aiohttp is not installed.

Like the httpx transport it never retries a POST (the engine decides what is
safe to repeat; aiohttp itself re-sends only idempotent methods on a keep-alive
connection the server had already closed), never follows redirects, keeps no
cookies, asks for no compression (the size cap counts the bytes that arrive),
and says whether a failed request may have reached the server. Each request
has a total deadline (``TransportConfig.request_deadline``) from asking for a
connection to the last byte of the body: aiohttp's ``total`` timeout, which it
starts for every request anyway (a raw ``ClientSession`` has one of five
minutes), so the deadline costs no timer of its own; the per-read timeouts
alone would let a server trickling a byte at a time hold a request forever.

Loading the plugin imports neither aiohttp nor the engine's HTTP types: the
first ``send`` imports ``flowengine_aiohttp._wire``, which does.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import TYPE_CHECKING

from flowengine import hookimpl

if TYPE_CHECKING:
    import ssl

    import aiohttp
    from flowengine import HttpRequest, HttpResponse, TransportConfig

__all__ = ["AiohttpTransport", "flowengine_transport"]


class AiohttpTransport:
    """Sends the engine's requests over one pooled ``aiohttp.ClientSession``.

    The session is opened on the first ``send``, inside the event loop that
    uses it (aiohttp binds a session to its loop); pass ``session`` to share
    one you manage, which ``aclose`` then leaves open (its requests are sent
    with this transport's timeouts and deadline).
    """

    def __init__(
        self, config: TransportConfig | None = None, session: aiohttp.ClientSession | None = None
    ) -> None:
        from flowengine import TransportConfig

        self.config = config or TransportConfig()
        self._session = session
        self._owns_session = session is None
        self._timeout: aiohttp.ClientTimeout | None = None

    def _open(self) -> aiohttp.ClientSession:
        """The session (opened now, unless one was passed in) and every request's timeouts."""
        import flowengine_aiohttp._wire as wire

        if self._session is None:
            self._session = wire.open_session(self.config, _ssl_context())
        self._timeout = wire.timeouts(self.config)
        return self._session

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send the request; read at most ``max_response_bytes`` of the answer, within the deadline.

        Past ``request_deadline`` the request fails with ``transport_timeout``:
        ``sent=False`` only while it had no connection yet (with a session you
        passed in, which cannot tell, always ``sent=True``).
        """
        import flowengine_aiohttp._wire as wire

        session = self._session
        if session is None or self._timeout is None:
            session = self._open()
        attempt = wire.Attempt()
        marker = wire.ATTEMPT.set(attempt)
        try:
            async with session.request(
                request.method,
                wire.URL(request.url, encoded=True),  # sent as built: no re-quoting
                headers=request.headers,
                data=request.body or None,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                headers = wire.headers_of(response)
                body = await wire.bounded_body(response.content, self.config.max_response_bytes, request)
        except Exception as exc:
            sent = attempt.connected or not self._owns_session
            failure = wire.failure(exc, request, self.config.request_deadline, sent_by_deadline=sent)
            if failure is None:
                raise
            raise failure from None
        finally:
            wire.ATTEMPT.reset(marker)
        return wire.HttpResponse(response.status, headers, body)

    async def aclose(self) -> None:
        """Close the pooled connections (of a session this transport opened)."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None
        self._timeout = None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """certifi's roots when installed (what the httpx transport trusts), else the system's.

    Made once per process and shared by every transport: loading the roots takes tens of
    milliseconds, and a context that is never changed after it is made is safe to share.
    """
    import ssl

    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


@hookimpl(tryfirst=True)
def flowengine_transport(config: TransportConfig) -> AiohttpTransport | None:
    """The aiohttp transport, configured from ``config``; None when aiohttp is not installed."""
    if importlib.util.find_spec("aiohttp") is None:
        return None
    return AiohttpTransport(config)
