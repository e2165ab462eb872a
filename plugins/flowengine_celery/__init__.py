"""Celery workers for flowengine: refreshes, exchanges and grants as tasks, and a beat keeping tokens fresh.

Installed with the ``celery`` extra. Run a fleet with Celery's own command::

    celery -A flowengine_celery.app worker      # as many as you like, on as many machines
    celery -A flowengine_celery.app beat        # one: queues keep_fresh every FLOWENGINE_CELERY_EVERY

Every worker builds its engines from its own environment (the store URL, the
client credentials, the rate limits); messages carry spec names, token keys,
flow ids and fingerprints, never a token or a secret. Exactly once comes from
the shared store (PostgreSQL or Redis), and the rate limits are kept fleet-wide
in the same place (``SharedLimiter``). ``flowengine batch refresh --via celery``
queues a batch's refreshes for the fleet instead of running them (the
``flowengine_refresh_queue`` hook). See docs/deploy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowengine import RefreshQueue, hookimpl, lazy_exports

if TYPE_CHECKING:
    from ._app import configuration, create_app, install
    from ._limiter import Bucket, LimiterBackend, SharedLimiter, SharedPermit, TooLong, open_backend
    from ._queue import CeleryQueue
    from ._settings import FleetSettings
    from ._spread import spread

__all__ = [
    "Bucket",
    "CeleryQueue",
    "FleetSettings",
    "LimiterBackend",
    "SharedLimiter",
    "SharedPermit",
    "TooLong",
    "configuration",
    "create_app",
    "flowengine_refresh_queue",
    "install",
    "open_backend",
    "spread",
]

# Celery is imported when a name is used, not when the plugin loads with every `flowengine` command.
__getattr__ = lazy_exports(
    __name__,
    {
        "configuration": "._app",
        "create_app": "._app",
        "install": "._app",
        "Bucket": "._limiter",
        "LimiterBackend": "._limiter",
        "SharedLimiter": "._limiter",
        "SharedPermit": "._limiter",
        "TooLong": "._limiter",
        "open_backend": "._limiter",
        "CeleryQueue": "._queue",
        "FleetSettings": "._settings",
        "spread": "._spread",
    },
)


@hookimpl
def flowengine_refresh_queue(via: str) -> RefreshQueue | None:
    """``celery``: refreshes go to the fleet's broker (``FLOWENGINE_CELERY_BROKER``); None for other names."""
    if via != "celery":
        return None
    from ._queue import CeleryQueue

    return CeleryQueue()
