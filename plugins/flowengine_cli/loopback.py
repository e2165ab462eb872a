"""The loopback listener of a terminal login (RFC 8252 §7.3): one callback, then it closes.

A few dozen lines of HTTP/1.1 on ``asyncio`` rather than a web server: the
listener answers one kind of request, must never write an access log (the
authorization code is in the URL, SECURITY.md 14), and must be gone the moment
the flow ends. A general-purpose server would bring an access log to switch
off, a lifespan, workers and an import cost, for nothing this needs.

What it does: a ``GET`` of the callback path is handed to ``handler``, which
says what to answer and whether the login is over; ``/favicon.ico`` and any
other path get a 404, other methods a 405, and a connection that sends nothing
(a browser's speculative pre-connect) is dropped after ``READ_TIMEOUT``.
Nothing is printed or logged for any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import html
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from urllib.parse import urlsplit

import attrs
from flowengine import ConfigError

__all__ = ["LoopbackListener", "Reply"]

#: The longest request head accepted; a callback URL is far shorter (the engine takes 16 KiB).
MAX_HEAD = 32 * 1024
#: How long a connection may take to send its request head.
READ_TIMEOUT = 10.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}</style>
</head><body><h1>{title}</h1><p>{message}</p></body></html>
"""


@attrs.frozen
class Reply:
    """What the browser is shown for a request, and whether the login is over with it."""

    status: int
    title: str
    message: str
    finished: bool = False

    def encode(self) -> bytes:
        """The whole HTTP/1.1 response; the page's text is escaped (it may quote the provider)."""
        body = _PAGE.format(title=html.escape(self.title), message=html.escape(self.message)).encode()
        head = (
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Error')}\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            # The page's URL holds the code: never send it on as a Referer.
            "Referrer-Policy: no-referrer\r\n"
            "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode("ascii") + body


NOT_FOUND = Reply(404, "Not found", "This address only receives the login's callback.")
BAD_REQUEST = Reply(400, "Bad request", "This request could not be read.")
NOT_ALLOWED = Reply(405, "Method not allowed", "Only GET is answered here.")

Handler = Callable[[str], Awaitable[Reply]]


class LoopbackListener:
    """Listens on a loopback address for the callback; ``async with`` opens and closes it.

    ``handler`` receives the full callback URL of each ``GET`` on ``path`` and
    returns the ``Reply``; the first reply with ``finished=True`` ends the wait,
    and the listener stops accepting connections as soon as it is sent.
    """

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0, path: str = "/callback"):
        self.handler = handler
        self.host = host
        self.port = port
        self.path = path
        self._server: asyncio.Server | None = None
        self._finished = asyncio.Event()
        self._error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lock = asyncio.Lock()

    @property
    def redirect_uri(self) -> str:
        """``http://127.0.0.1:PORT/callback``: the redirect URI this listener answers."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    @property
    def listening(self) -> bool:
        """True while connections are accepted."""
        return self._server is not None and self._server.is_serving()

    async def open(self) -> LoopbackListener:
        """Bind and listen; a port in use is a ``ConfigError`` that says so."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, family=family, limit=MAX_HEAD, reuse_address=True
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {self.port} on {self.host} is already in use: choose another --port, "
                    "or leave it out to take a free one",
                    code="port_in_use",
                ) from None
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}", code="listen_failed"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def wait(self) -> None:
        """Return once a reply with ``finished=True`` was sent; raise what the handler raised, if it did."""
        await self._finished.wait()
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        """Stop listening and drop open connections (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def __aenter__(self) -> LoopbackListener:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            reply = await self._reply(reader)
            if reply is None:
                return
            writer.write(reply.encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            if reply.finished:
                # Stop accepting at once; the caller closes the rest.
                if self._server is not None:
                    self._server.close()
                self._finished.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _reply(self, reader: asyncio.StreamReader) -> Reply | None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError):
            return None  # a pre-connect that never spoke, or a client that went away
        except asyncio.LimitOverrunError:
            return BAD_REQUEST
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
            return BAD_REQUEST
        method, target, _version = parts
        if urlsplit(target).path != self.path:
            return NOT_FOUND
        if method != "GET":
            return NOT_ALLOWED
        if self._finished.is_set():
            return Reply(200, "Already done", "This login is over; you can close this tab.")
        async with self._lock:  # a double-submitted callback waits for the first one's outcome
            try:
                return await self.handler(self.redirect_uri.removesuffix(self.path) + target)
            except Exception as exc:
                # Not asyncio's "unhandled exception" log: the waiting caller gets it from wait().
                self._error = exc
                return Reply(500, "Sign-in failed", "Something went wrong; see the terminal.", finished=True)
