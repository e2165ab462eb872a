"""What the aiohttp transport does with aiohttp: the session, the timeouts, the answer, the errors.

Imported on the first ``send``, with aiohttp itself.

A request that times out before it has a connection cannot have reached the
server; one that has a connection may have (its headers go out next). aiohttp
says nothing about that when the deadline cancels it, so the transport's own
connector marks the running request (found through a context variable: the
connector runs in the sending task) as soon as a connection is handed to it.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from flowengine import HttpResponse, TransportError
from yarl import URL

if TYPE_CHECKING:
    import ssl

    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace
    from flowengine import HttpRequest, TransportConfig

__all__ = [
    "ATTEMPT",
    "URL",
    "Attempt",
    "HttpResponse",
    "MarkingConnector",
    "bounded_body",
    "failure",
    "headers_of",
    "open_session",
    "timeouts",
]


class Attempt:
    """One request on its way: ``connected`` once a connection was handed to it."""

    __slots__ = ("connected",)

    def __init__(self) -> None:
        self.connected = False


ATTEMPT: ContextVar[Attempt | None] = ContextVar("flowengine_aiohttp_attempt", default=None)


class MarkingConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that marks the running request once it has a connection."""

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> Connection:
        """The connection aiohttp would hand out, after marking the request that asked for it."""
        connection = await super().connect(req, traces, timeout)
        attempt = ATTEMPT.get()
        if attempt is not None:
            attempt.connected = True
        return connection


def open_session(config: TransportConfig, ssl_context: ssl.SSLContext) -> aiohttp.ClientSession:
    """A pooled session: no cookies kept, no compression asked for, no proxy from the environment."""
    connector = MarkingConnector(
        limit=config.max_connections,
        limit_per_host=0,
        ssl=ssl_context,
        force_close=False,
        keepalive_timeout=config.keepalive_expiry,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeouts(config),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"accept-encoding": "identity"},
        trust_env=False,
    )


def timeouts(config: TransportConfig) -> aiohttp.ClientTimeout:
    """Every request's timeouts; ``total`` is the request deadline, exact (never rounded up)."""
    return aiohttp.ClientTimeout(
        total=config.request_deadline,  # from asking for a connection to the end of the body
        connect=config.timeout,  # waiting for a pooled connection, and connecting
        sock_connect=config.connect_timeout,
        sock_read=config.timeout,
        ceil_threshold=math.inf,
    )


def headers_of(response: aiohttp.ClientResponse) -> dict[str, str]:
    """Header names lower-cased; a repeated header's values joined with ", " (as httpx does)."""
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


async def bounded_body(content: aiohttp.StreamReader, limit: int, request: HttpRequest) -> bytes:
    """The whole body, or ``response_too_large`` as soon as more than ``limit`` bytes came."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > limit:
            raise TransportError(
                f"the response from {_origin(request)} is larger than {limit} bytes",
                code="response_too_large",
                retryable=False,
            )
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def failure(
    exc: Exception, request: HttpRequest, deadline: float, *, sent_by_deadline: bool
) -> TransportError | None:
    """aiohttp's error as the engine's ``TransportError``, saying whether it may have been sent.

    ``sent_by_deadline`` is what to say of a request the deadline cut off. None for any
    other error (a ``TransportError`` the transport raised itself included).
    """
    origin = _origin(request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError(f"timed out connecting to {origin}", code="transport_timeout", sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        return TransportError(f"cannot connect to {origin}: {_reason(exc)}", sent=False)
    if isinstance(exc, aiohttp.ServerTimeoutError):  # sock_read: the request went out, no answer came
        return TransportError(f"{origin} did not answer in time", code="transport_timeout")
    if isinstance(exc, TimeoutError):  # aiohttp's total: the request deadline
        return TransportError(
            f"{origin} did not finish answering within {deadline:g} s",
            code="transport_timeout",
            sent=sent_by_deadline,
        )
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"the exchange with {origin} broke off: {_reason(exc)}")
    return None


def _origin(request: HttpRequest) -> str:
    parts = urlsplit(request.url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _reason(exc: Exception) -> str:
    return type(exc).__name__ + (f" ({str(exc)[:120]})" if str(exc) else "")
