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
connection to the last byte of the body: aiohttp's own timeouts are per read,
so a server trickling a byte at a time would otherwise hold a request forever.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from typing import TYPE_CHECKING

from flowengine import HttpRequest, HttpResponse, TransportConfig, TransportError, hookimpl

if TYPE_CHECKING:  # aiohttp is imported when the first request is sent, not at plugin load
    import ssl

    import aiohttp

__all__ = ["AiohttpTransport", "flowengine_transport"]


class AiohttpTransport:
    """Sends the engine's requests over one pooled ``aiohttp.ClientSession``.

    The session is opened on the first ``send``, inside the event loop that
    uses it (aiohttp binds a session to its loop); pass ``session`` to share
    one you manage, which ``aclose`` then leaves open.
    """

    def __init__(
        self, config: TransportConfig | None = None, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.config = config or TransportConfig()
        self._session = session
        self._owns_session = session is None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        from flowengine_aiohttp._wire import MarkingConnector

        config = self.config
        connector = MarkingConnector(
            limit=config.max_connections, limit_per_host=0, ssl=_ssl_context(), force_close=False
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=config.timeout,  # waiting for a pooled connection, and connecting
            sock_connect=config.connect_timeout,
            sock_read=config.timeout,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            headers={"accept-encoding": "identity"},
            trust_env=False,
        )

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send the request; read at most ``max_response_bytes`` of the answer, within the deadline.

        Past ``request_deadline`` the request fails with ``transport_timeout``:
        ``sent=False`` only while it had no connection yet (with a session you
        passed in, which cannot tell, always ``sent=True``).
        """
        from flowengine_aiohttp._wire import ATTEMPT, Attempt

        session = self._session
        if session is None:
            session = self._session = self._open()
        attempt = Attempt()
        marker = ATTEMPT.set(attempt)
        deadline = self.config.request_deadline
        try:
            async with asyncio.timeout(deadline):
                return await self._send(session, request)
        except TimeoutError:  # the deadline's own: _send turns aiohttp's timeouts into TransportError
            raise TransportError(
                f"{_origin(request)} did not finish answering within {deadline:g} s",
                code="transport_timeout",
                sent=attempt.connected or not self._owns_session,
            ) from None
        finally:
            ATTEMPT.reset(marker)

    async def _send(self, session: aiohttp.ClientSession, request: HttpRequest) -> HttpResponse:
        import aiohttp
        from yarl import URL

        limit = self.config.max_response_bytes
        try:
            async with session.request(
                request.method,
                URL(request.url, encoded=True),  # sent as built: no re-quoting
                headers=request.headers,
                data=request.body or None,
                allow_redirects=False,
            ) as response:
                body = bytearray()
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > limit:
                        raise TransportError(
                            f"the response from {_origin(request)} is larger than {limit} bytes",
                            code="response_too_large",
                            retryable=False,
                        )
                return HttpResponse(response.status, _headers(response), bytes(body))
        except aiohttp.ConnectionTimeoutError:
            raise TransportError(
                f"timed out connecting to {_origin(request)}", code="transport_timeout", sent=False
            ) from None
        except (aiohttp.ClientConnectorError, aiohttp.InvalidURL) as exc:
            raise TransportError(
                f"cannot connect to {_origin(request)}: {_reason(exc)}", sent=False
            ) from None
        except TimeoutError:  # aiohttp.SocketTimeoutError: the request went out, no answer came
            raise TransportError(
                f"{_origin(request)} did not answer in time", code="transport_timeout"
            ) from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"the exchange with {_origin(request)} broke off: {_reason(exc)}") from None

    async def aclose(self) -> None:
        """Close the pooled connections (of a session this transport opened)."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    """Header names lower-cased; a repeated header's values joined with ", " (as httpx does)."""
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


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


def _origin(request: HttpRequest) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(request.url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _reason(exc: Exception) -> str:
    return type(exc).__name__ + (f" ({str(exc)[:120]})" if str(exc) else "")


@hookimpl(tryfirst=True)
def flowengine_transport(config: TransportConfig) -> AiohttpTransport | None:
    """The aiohttp transport, configured from ``config``; None when aiohttp is not installed."""
    if importlib.util.find_spec("aiohttp") is None:
        return None
    return AiohttpTransport(config)
