"""Serving an ASGI app on a loopback port with uvicorn: in a background thread, or until a signal.

Several plugins serve an app (the sandbox, the web frontend), and each must do
it the same careful way, so the server lives here rather than in one of them:

- the socket is bound here, not by uvicorn, so that port 0 yields a free port
  known before the first request, and with ``IPPROTO_TCP`` so that asyncio sets
  ``TCP_NODELAY`` (without it every response with a body waits ~40 ms);
- a port in use is a ``ConfigError`` (``port_in_use``) whose wording is the same
  for every command that serves;
- uvicorn writes no access log: callback URLs carry codes in their query string
  (SECURITY.md 14);
- an idle connection is kept ``KEEP_ALIVE`` seconds (uvicorn's default is 5 s),
  longer than clients keep theirs idle (aiohttp 15 s, browsers up to 300 s on
  their side but they re-send a GET that met a closed connection) and than load
  balancers' idle timeouts (60 s on AWS): a client that reuses a connection the
  server is just closing sees its request broken off, maybe after it was sent.

uvicorn is imported when a server starts, not with this module: it comes with
the ``sandbox`` and ``web`` extras, and ``import flowengine`` stays light.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from flowengine._errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

__all__ = ["AppServer", "bind", "serve_app_forever", "url_of"]

#: How long ``start()`` waits for uvicorn before giving up: generous, it takes milliseconds.
START_TIMEOUT = 10.0
#: How long stopping lets open requests finish before cancelling them.
GRACEFUL_SHUTDOWN_TIMEOUT = 5
#: How long an idle client connection is kept open (nginx's default; see the module docstring).
KEEP_ALIVE = 75


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one; read it from the socket).

    A port in use is a ``ConfigError`` with code ``port_in_use``; any other
    failure to listen is ``listen_failed``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (another server is listening there): "
                "stop it, or choose another port (0 picks a free one)",
                code="port_in_use",
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", code="listen_failed") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@functools.cache
def _server_class() -> type[uvicorn.Server]:
    """uvicorn's Server that calls back once it accepts connections (uvicorn imported here)."""
    import uvicorn

    class NotifyingServer(uvicorn.Server):
        def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
            super().__init__(config)
            self.on_started = on_started

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                self.on_started()

    return NotifyingServer


def _server(app: Any, on_started: Callable[[], None], **options: Any) -> uvicorn.Server:
    import uvicorn

    config = uvicorn.Config(
        app,
        access_log=False,  # SECURITY.md 14: a request line carries the callback's code
        log_level="warning",
        lifespan="auto",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT,
        timeout_keep_alive=KEEP_ALIVE,
        **options,
    )
    server_class: Any = _server_class()
    server: uvicorn.Server = server_class(config, on_started)
    return server


class AppServer:
    """An ASGI app served by uvicorn on a loopback port in a background thread.

    For tests and for embedding: ``with AppServer(app) as server: ... server.url ...``.
    Using it before ``start()`` or starting it twice is a ``RuntimeError``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port  # the bound port once started (port 0 picks a free one)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None or self._url is None:
            raise RuntimeError("the server is not running")
        return self._url

    def start(self) -> None:
        """Start serving; return once the server accepts connections."""
        if self._server is not None:
            raise RuntimeError("the server is already running")
        sock = bind(self.host, self.port)
        self.port, url = sock.getsockname()[1], url_of(sock)
        started = threading.Event()
        # Embedded in someone else's process: leave its logging configuration alone.
        server = _server(self.app, started.set, log_config=None)
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
            raise RuntimeError(f"the server did not start on {url}")
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
    def _serve(server: uvicorn.Server, sock: socket.socket, started: threading.Event) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        finally:
            sock.close()
            started.set()  # never leave start() waiting when startup failed


def serve_app_forever(app: Any, sock: socket.socket, announce: Callable[[], None]) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM; ``announce`` runs once it accepts connections."""
    server = _server(app, announce)
    # A server's normal end is a signal: SIGTERM stops it as Ctrl-C does, exit 0 (uvicorn
    # re-raises the signal it caught once it has shut down gracefully; so may one before it starts).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm) if main_thread else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        sock.close()


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
