"""ASGI apps served over loopback by uvicorn: in a background thread, or until Ctrl-C.

``AppServer`` serves any ASGI app (the web frontend uses it too); ``SandboxServer``
serves the sandbox. The socket is bound here, not by uvicorn, so that port 0
yields a free port that is known before the first request, and with
``IPPROTO_TCP`` so that asyncio sets ``TCP_NODELAY``. uvicorn writes no access
log: URLs carry codes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from flowengine_sandbox.app import create_app
from flowengine_sandbox.errors import SandboxError
from flowengine_sandbox.faults import WireAccess
from flowengine_sandbox.settings import SandboxSettings
from flowengine_sandbox.state import SandboxState

__all__ = ["AppServer", "SandboxServer", "bind", "serve_app_forever", "serve_forever", "url_of"]

# How long start() waits for uvicorn before giving up: generous, it takes milliseconds.
START_TIMEOUT = 10.0
# How long stop() lets open requests finish before cancelling them.
GRACEFUL_SHUTDOWN_TIMEOUT = 5


class _NotifyingServer(uvicorn.Server):
    """A uvicorn server that calls back once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self._on_started()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one; read it from the socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every response with a body waits ~40 ms (Nagle meets delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _config(app: Any, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        access_log=False,
        log_level="warning",
        lifespan="auto",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT,
        **options,
    )


class AppServer:
    """An ASGI app served by uvicorn on a loopback port in a background thread.

    For tests and for embedding: ``with AppServer(app) as server: ... server.url ...``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port  # the bound port once started (port 0 picks a free one)
        self._server: _NotifyingServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None or self._url is None:
            raise SandboxError("the server is not running")
        return self._url

    def start(self) -> None:
        """Start serving; return once the server accepts connections."""
        if self._server is not None:
            raise SandboxError("the server is already running")
        sock = bind(self.host, self.port)
        self.port, url = sock.getsockname()[1], url_of(sock)
        started = threading.Event()
        # Embedded in someone else's process: leave its logging configuration alone.
        server = _NotifyingServer(_config(self.app, log_config=None), on_started=started.set)
        thread = threading.Thread(
            target=self._serve,
            args=(server, sock, started),
            name=f"flowengine-serve-{self.port}",
            daemon=True,
        )
        thread.start()
        if not started.wait(START_TIMEOUT) or not server.started:
            server.should_exit = True
            thread.join(START_TIMEOUT)
            sock.close()
            raise SandboxError(f"the server did not start on {url}")
        self._server, self._thread, self._url = server, thread, url

    def stop(self) -> None:
        """Stop serving (open requests finish first) and wait for the thread to end."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join()
        self._server = self._thread = self._url = None

    def __enter__(self) -> AppServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @staticmethod
    def _serve(server: _NotifyingServer, sock: socket.socket, started: threading.Event) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        finally:
            sock.close()
            started.set()  # never leave start() waiting when startup failed


class SandboxServer(AppServer):
    """The sandbox app served in a background thread; ``with`` starts and stops it."""

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state: SandboxState | None = None,
    ) -> None:
        self.settings = SandboxSettings() if settings is None else settings
        self.state = SandboxState() if state is None else state
        # WireAccess: the trickle fault of headers writes to the connection itself (faults.py).
        super().__init__(WireAccess(create_app(self.settings, self.state)), host, port)

    def __enter__(self) -> SandboxServer:
        self.start()
        return self


def serve_app_forever(app: Any, sock: socket.socket, announce: Callable[[], None]) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM; ``announce`` runs once it accepts connections."""
    server = _NotifyingServer(_config(app), on_started=announce)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises a captured SIGINT after its graceful shutdown.
        pass
    finally:
        sock.close()


def serve_forever(host: str = "127.0.0.1", port: int = 0, settings: SandboxSettings | None = None) -> None:
    """Serve the sandbox until Ctrl-C; print its URL and client ids, never a secret."""
    settings = SandboxSettings() if settings is None else settings
    sock = bind(host, port)
    url = url_of(sock)

    def announce() -> None:
        print(f"Podio sandbox on {url} (Ctrl-C stops it)", flush=True)
        for client in settings.clients.values():
            print(f"  client_id {client.client_id}: redirect URIs on {client.registered_domain}", flush=True)

    serve_app_forever(WireAccess(create_app(settings)), sock, announce)
