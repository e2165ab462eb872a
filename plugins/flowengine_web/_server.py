"""Serving the web frontend: the core's loopback uvicorn server (``flowengine.serving``).

``WebServer`` runs an app in a background thread (tests, embedding);
``serve_forever`` runs it until Ctrl-C or SIGTERM (``flowengine web serve``).
"""

from __future__ import annotations

from flowengine.serving import AppServer as WebServer
from flowengine.serving import bind, url_of
from flowengine.serving import serve_app_forever as serve_forever

__all__ = ["WebServer", "bind", "serve_forever", "url_of"]
