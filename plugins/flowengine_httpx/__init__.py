"""The default transport: one shared ``httpx.AsyncClient`` with timeouts and a size cap.

It never retries by itself (the engine decides what is safe to repeat) and
never follows redirects (a token endpoint that redirects is answered as is).
Errors say whether the request may have reached the server: a refused
connection did not, a read timeout may have.
"""

from __future__ import annotations

import httpx
from flowengine import hookimpl
from flowengine.errors import TransportError
from flowengine.http import HttpRequest, HttpResponse, TransportConfig

__all__ = ["HttpxTransport", "flowengine_transport"]


class HttpxTransport:
    """Sends the engine's requests over one pooled ``httpx.AsyncClient``."""

    def __init__(
        self, config: TransportConfig | None = None, client: httpx.AsyncClient | None = None
    ) -> None:
        self.config = config or TransportConfig()
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.timeout, connect=self.config.connect_timeout),
            limits=httpx.Limits(
                max_connections=self.config.max_connections,
                max_keepalive_connections=self.config.max_connections,
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send the request; read at most ``max_response_bytes`` of the answer."""
        limit = self.config.max_response_bytes
        try:
            async with self._client.stream(
                request.method, request.url, headers=request.headers, content=request.body
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
        await self._client.aclose()


def _origin(request: HttpRequest) -> str:
    url = httpx.URL(request.url)
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _reason(exc: Exception) -> str:
    return type(exc).__name__ + (f" ({str(exc)[:120]})" if str(exc) else "")


@hookimpl
def flowengine_transport(config: TransportConfig) -> HttpxTransport:
    """The httpx transport, configured from ``config``."""
    return HttpxTransport(config)
