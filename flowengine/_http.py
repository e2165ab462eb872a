"""The sans-I/O seam: requests the engine builds and responses a transport returns.

No httpx (or any other client) object crosses into the core. A transport plugin
turns an ``HttpRequest`` into bytes on the wire and the answer into an
``HttpResponse``; when it cannot, it raises ``TransportError`` saying whether
the request may have reached the server.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

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


@attrs.frozen
class TransportConfig:
    """Settings every transport honours."""

    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_response_bytes: int = 1 << 20
    max_connections: int = 100
    user_agent: str = "flowengine"


@runtime_checkable
class Transport(Protocol):
    """Sends requests; returned by the ``flowengine_transport`` hook."""

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send one request and return the whole response (bounded in size)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
