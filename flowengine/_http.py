"""The sans-I/O seam: requests the engine builds and responses a transport returns.

No httpx (or any other client) object crosses into the core. A transport plugin
turns an ``HttpRequest`` into bytes on the wire and the answer into an
``HttpResponse``; when it cannot, it raises ``TransportError`` saying whether
the request may have reached the server.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import attrs

from flowengine._errors import ConfigError

__all__ = ["HttpRequest", "HttpResponse", "Transport", "TransportConfig"]


def _headers(value: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in value.items()}


@attrs.frozen(slots=True)
class HttpRequest:
    """A request to send; ``headers`` may hold credentials, so it is never repr'd whole."""

    method: str
    url: str
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)
    body: bytes = attrs.field(default=b"", repr=False)


@attrs.frozen(slots=True)
class HttpResponse:
    """What came back; header names are lower-cased."""

    status: int
    headers: dict[str, str] = attrs.field(factory=dict, converter=_headers)
    body: bytes = attrs.field(default=b"", repr=False)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``application/json``)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def _seconds(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    """A duration must be a finite number of seconds above zero (``inf`` would mean: never)."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(
            f"TransportConfig.{attribute.name} must be a positive, finite number of seconds, not {value!r}"
        )


@attrs.frozen
class TransportConfig:
    """Settings every transport honours.

    ``timeout`` bounds each wait for the server (a read, a pooled connection)
    and ``connect_timeout`` the TCP/TLS connect; neither stops a server that
    trickles a byte just before each wait would end. ``request_deadline``
    does: one request, from asking for a connection to the last byte of the
    body, fails with ``transport_timeout`` once it has taken that long.
    ``operation_deadline`` bounds one operation over all its attempts and
    the backoff between them (a refresh retried four times, say); the
    engine enforces it, a transport only sends one request at a time.
    ``keepalive_expiry`` is how long an idle pooled connection may be reused:
    shorter than the servers' own keep-alive (Apache's and uvicorn's are 5 s),
    so a request never goes out on a connection the server is just closing,
    which would fail it as broken off after it may have been sent.
    """

    timeout: float = attrs.field(default=30.0, validator=_seconds)
    connect_timeout: float = attrs.field(default=10.0, validator=_seconds)
    max_response_bytes: int = 1 << 20
    max_connections: int = 100
    user_agent: str = "flowengine"
    request_deadline: float = attrs.field(default=60.0, validator=_seconds)
    operation_deadline: float = attrs.field(default=120.0, validator=_seconds)
    keepalive_expiry: float = attrs.field(default=4.0, validator=_seconds)


@runtime_checkable
class Transport(Protocol):
    """Sends requests; returned by the ``flowengine_transport`` hook."""

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send one request and return the whole response (bounded in size)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
