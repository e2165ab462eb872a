"""The httpx transport: pooled ``httpx.AsyncClient``s with timeouts and a size cap.

It never retries by itself (the engine decides what is safe to repeat) and
never follows redirects (a token endpoint that redirects is answered as is).
Errors say whether the request may have reached the server: a refused
connection did not, a read timeout may have. Each request has a total deadline
(``TransportConfig.request_deadline``) from asking for a connection to the last
byte of the body: httpx's own timeouts are per read, so a server trickling a
byte at a time would otherwise hold a request forever.

The pool is split into a few clients used in turn: httpcore's pool scans every
connection and every waiting request on each request it assigns, so one pool
of 50 busy connections spends more CPU on bookkeeping than on HTTP (measured
in ``benchmarks/e2e.py``: a split pool more than doubles throughput at
concurrency 50). ``httpx`` itself is imported on first use, not when the plugin
loads: importing it costs tens of milliseconds at every ``flowengine`` start; so
are asyncio and the engine's HTTP types (the plugin loads with every command).
"""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING, Any

from flowengine import hookimpl

if TYPE_CHECKING:
    import ssl

    import httpx
    from flowengine import HttpRequest, HttpResponse, TransportConfig

__all__ = ["HttpxTransport", "flowengine_transport"]

#: Connections per pooled client, at most; the pool is split into clients of this size.
CONNECTIONS_PER_CLIENT = 12


class HttpxTransport:
    """Sends the engine's requests over pooled ``httpx.AsyncClient``s (or the one you pass)."""

    def __init__(
        self, config: TransportConfig | None = None, client: httpx.AsyncClient | None = None
    ) -> None:
        from flowengine import TransportConfig

        self.config = config or TransportConfig()
        self._owns_clients = client is None
        self._clients = [client] if client is not None else self._open()
        self._turn = itertools.cycle(self._clients)

    def _open(self) -> list[httpx.AsyncClient]:
        from http.cookiejar import CookieJar, DefaultCookiePolicy

        import httpx

        config = self.config
        count = max(1, -(-config.max_connections // CONNECTIONS_PER_CLIENT))
        per_client = max(1, config.max_connections // count)
        return [
            httpx.AsyncClient(
                timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
                limits=httpx.Limits(
                    max_connections=per_client,
                    max_keepalive_connections=per_client,
                    keepalive_expiry=config.keepalive_expiry,
                ),
                follow_redirects=False,
                trust_env=False,
                verify=_ssl_context(),
                # The body is read raw (to cap its size): ask for it uncompressed.
                headers={"accept-encoding": "identity"},
                # A token endpoint's cookies are never sent back: a jar that accepts none.
                cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            )
            for _ in range(count)
        ]

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send the request; read at most ``max_response_bytes`` of the answer, within the deadline.

        Past ``request_deadline`` the request fails with ``transport_timeout``:
        ``sent=False`` only while no byte of it was written (httpcore's trace
        says when its headers start to go out; with a client you passed in,
        whose transport may not trace, always ``sent=True``).
        """
        import asyncio

        from flowengine import TransportError

        attempt = _Attempt()
        deadline = self.config.request_deadline
        try:
            async with asyncio.timeout(deadline):
                return await self._send(request, attempt)
        except TimeoutError:  # the deadline's own: _send turns httpx's timeouts into TransportError
            raise TransportError(
                f"{_origin(request)} did not finish answering within {deadline:g} s",
                code="transport_timeout",
                sent=attempt.writing or not self._owns_clients,
            ) from None

    async def _send(self, request: HttpRequest, attempt: _Attempt) -> HttpResponse:
        import httpx
        from flowengine import HttpResponse, TransportError

        limit = self.config.max_response_bytes
        try:
            async with next(self._turn).stream(
                request.method,
                request.url,
                headers=request.headers,
                content=request.body,
                extensions={"trace": attempt.trace},
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > limit:
                        raise TransportError(
                            f"the response from {_origin(request)} is larger than {limit} bytes",
                            code="response_too_large",
                            retryable=False,
                        )
                return HttpResponse(response.status_code, dict(response.headers), bytes(body))
        except httpx.ConnectTimeout:
            raise TransportError(
                f"timed out connecting to {_origin(request)}", code="transport_timeout", sent=False
            ) from None
        except httpx.ConnectError as exc:
            raise TransportError(
                f"cannot connect to {_origin(request)}: {_reason(exc)}", sent=False
            ) from None
        except httpx.PoolTimeout:
            raise TransportError(
                "no free connection in the pool in time", code="transport_timeout", sent=False
            ) from None
        except httpx.TimeoutException:
            raise TransportError(
                f"{_origin(request)} did not answer in time", code="transport_timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise TransportError(f"the exchange with {_origin(request)} broke off: {_reason(exc)}") from None

    async def aclose(self) -> None:
        """Close the pooled connections."""
        for client in self._clients:
            await client.aclose()


class _Attempt:
    """One request on its way: ``writing`` once httpcore starts sending its headers."""

    __slots__ = ("writing",)

    def __init__(self) -> None:
        self.writing = False

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension: called at the start and end of every step."""
        if event.endswith(".send_request_headers.started"):
            self.writing = True


def _origin(request: HttpRequest) -> str:
    import httpx

    url = httpx.URL(request.url)
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """certifi's roots, what httpx trusts by default, loaded once per process.

    httpx would load them once per client, and a transport has a client per
    ``CONNECTIONS_PER_CLIENT`` connections: tens of milliseconds each, every time
    an engine starts. The context is shared by every transport of this plugin;
    httpcore only sets its ALPN protocols (always HTTP/1.1 here) on it.
    """
    import ssl

    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _reason(exc: Exception) -> str:
    return type(exc).__name__ + (f" ({str(exc)[:120]})" if str(exc) else "")


@hookimpl
def flowengine_transport(config: TransportConfig) -> HttpxTransport:
    """The httpx transport, configured from ``config``."""
    return HttpxTransport(config)
