"""The trickle faults: an answer that arrives a byte at a time, so no single read times out.

A client whose timeouts are all per read waits forever on such a server: each
byte restarts the clock. Only a total deadline per request stops it, and these
faults are how the sandbox proves one (SECURITY.md 24).

- ``part="body"``: the status line and headers go out at once, then the body a
  byte every ``interval`` seconds. Plain ASGI: works under any server.
- ``part="headers"``: the status line and headers themselves trickle. ASGI
  sends headers whole, so this writes the bytes of the HTTP/1.1 answer straight
  to the connection, and closes it afterwards. It needs the connection, which
  ``WireAccess`` (the outermost wrapper the sandbox server runs) puts in the
  scope; served without it (in-process, through an ASGI transport) the request
  is answered 501 saying so.

Either way the trickle stops when the client hangs up; after ``delay`` seconds
(30 by default) the rest goes out at once. Every trickle is recorded (bytes
trickled, whether the client hung up) for tests to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from attrs import frozen

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WIRE", "TrickleLog", "TrickleRecord", "WireAccess", "trickle"]

#: The scope extension holding the connection's asyncio transport.
WIRE = "flowengine.sandbox.wire"
#: How long a headers trickle waits for its closed connection to be gone.
_CLOSE_WAIT = 10.0


class WireAccess:
    """ASGI wrapper that hands the connection's transport to faults below HTTP.

    uvicorn calls the app with its request cycle's bound ``send``; that cycle
    owns the connection's ``asyncio.Transport``. It is put in the scope under
    ``extensions[WIRE]``; a server that exposes no transport adds nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # ``state`` and the rest of the wrapped app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if scope["type"] == "http" and isinstance(transport, asyncio.WriteTransport):
            extensions = {**(scope.get("extensions") or {}), WIRE: {"transport": transport}}
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


@frozen
class TrickleRecord:
    """One trickled answer: which part, how many of its bytes went slowly, whether the client hung up."""

    part: str
    trickled: int
    total: int
    client_left: bool


class TrickleLog:
    """Every trickle so far, and an event per new one; shared by the server thread and a test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[TrickleRecord] = []
        self._done = threading.Condition(self._lock)

    def add(self, record: TrickleRecord) -> None:
        with self._done:
            self._records.append(record)
            self._done.notify_all()

    def records(self) -> list[TrickleRecord]:
        """The trickles that ended, oldest first."""
        with self._lock:
            return list(self._records)

    def wait(self, count: int, timeout: float) -> list[TrickleRecord]:
        """Block until ``count`` trickles ended (or ``timeout`` passed, a bound, not a window)."""
        with self._done:
            self._done.wait_for(lambda: len(self._records) >= count, timeout)
            return list(self._records)


async def trickle(
    part: str,
    interval: float,
    limit: float,
    answer: list[Message],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> TrickleRecord:
    """Send ``answer`` (the endpoint's ASGI messages) with ``part`` trickled; what happened."""
    status, headers, body = _parts(answer)
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch(receive, gone))
    try:
        if part == "body":
            return await _trickle_body(send, status, headers, body, interval, limit, gone)
        wire = (scope.get("extensions") or {}).get(WIRE)
        if wire is None:
            return await _no_wire(send)
        record = await _trickle_head(wire["transport"], status, headers, body, interval, limit, gone)
        # Wait for the closed connection's disconnect, or uvicorn would try to answer it again.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), _CLOSE_WAIT)
        return record
    finally:
        watcher.cancel()


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()


def _parts(answer: list[Message]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start = next(m for m in answer if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in answer if m["type"] == "http.response.body")
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    return start["status"], [*headers, (b"content-length", str(len(body)).encode())], body


async def _slowly(
    data: bytes, interval: float, limit: float, gone: asyncio.Event, write: Callable[[bytes], Awaitable[None]]
) -> int:
    """Write ``data`` a byte per ``interval`` until the client left or ``limit`` passed; bytes written."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + limit
    for sent in range(len(data)):
        if gone.is_set():
            return sent
        if loop.time() >= stop:
            await write(data[sent:])
            return sent
        await write(data[sent : sent + 1])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), interval)
    return len(data)


async def _trickle_body(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    interval: float,
    limit: float,
    gone: asyncio.Event,
) -> TrickleRecord:
    await send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    trickled = await _slowly(body, interval, limit, gone, write)
    if not gone.is_set():
        await send({"type": "http.response.body", "body": b""})
    return TrickleRecord("body", trickled, len(body), gone.is_set())


async def _trickle_head(
    transport: asyncio.WriteTransport,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    interval: float,
    limit: float,
    gone: asyncio.Event,
) -> TrickleRecord:
    try:
        reason = HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b""
    lines = [b"HTTP/1.1 %d %s" % (status, reason), *(k + b": " + v for k, v in headers)]
    head = b"\r\n".join([*lines, b"connection: close", b"", b""])

    async def write(chunk: bytes) -> None:
        if not transport.is_closing():
            transport.write(chunk)

    trickled = await _slowly(head, interval, limit, gone, write)
    await write(body)
    # The server's HTTP state never saw this answer: the connection cannot go on.
    if gone.is_set():
        transport.abort()
    else:
        transport.close()
    return TrickleRecord("headers", trickled, len(head), gone.is_set())


async def _no_wire(send: Send) -> TrickleRecord:
    body = b"the headers trickle needs the sandbox server (a real connection); this app has none"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 501, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return TrickleRecord("headers", 0, 0, False)
