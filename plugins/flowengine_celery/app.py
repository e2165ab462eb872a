"""The fleet's Celery app, configured from the environment: ``celery -A flowengine_celery.app worker``.

See docs/deploy.md for the variables (``FLOWENGINE_STORE``, ``FLOWENGINE_CELERY_*``).
"""

from __future__ import annotations

from ._app import create_app

__all__ = ["app"]

app = create_app()
