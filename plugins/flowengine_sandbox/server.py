"""The sandbox served over loopback: in a background thread, or until Ctrl-C.

The serving itself is the core's (``flowengine.serving``: the bound socket, no
access log, the same ``port_in_use`` error as every other server); this module
adds what is the sandbox's own: its app, its settings and what it announces.
"""

from __future__ import annotations

from flowengine.serving import AppServer, bind, serve_app_forever, url_of

from flowengine_sandbox.app import create_app
from flowengine_sandbox.faults import WireAccess
from flowengine_sandbox.settings import SandboxSettings
from flowengine_sandbox.state import SandboxState

__all__ = ["SandboxServer", "serve_forever"]


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


def serve_forever(host: str = "127.0.0.1", port: int = 0, settings: SandboxSettings | None = None) -> None:
    """Serve the sandbox until Ctrl-C or SIGTERM; print its URL and client ids, never a secret.

    A port in use is ``ConfigError`` (``port_in_use``), raised before anything is printed.
    """
    settings = SandboxSettings() if settings is None else settings
    sock = bind(host, port)
    url = url_of(sock)

    def announce() -> None:
        print(f"Podio sandbox on {url} (Ctrl-C stops it)", flush=True)
        for client in settings.clients.values():
            print(f"  client_id {client.client_id}: redirect URIs on {client.registered_domain}", flush=True)

    serve_app_forever(WireAccess(create_app(settings)), sock, announce)
