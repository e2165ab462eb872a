"""Serving the web frontend: the same loopback uvicorn server the sandbox uses.

``WebServer`` runs an app in a background thread (tests, embedding);
``serve_forever`` runs it until Ctrl-C or SIGTERM (``flowengine web serve``).
"""

from __future__ import annotations

from flowengine_sandbox.server import AppServer as WebServer
from flowengine_sandbox.server import bind, url_of
from flowengine_sandbox.server import serve_app_forever as serve_forever

__all__ = ["WebServer", "bind", "serve_forever", "url_of"]
