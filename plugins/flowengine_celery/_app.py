"""The Celery app: its configuration, the four tasks, and the worker's life cycle.

``celery -A flowengine_celery.app worker`` runs the app built from the
environment (``FleetSettings.from_env``); ``create_app(settings)`` builds one
from settings of your own, and ``install(app, settings)`` adds the tasks to an
app you already run. Messages are JSON only (no pickle: nothing in a message is
ever executed or unpickled) and acknowledged late, after the task ran, so a
worker that dies hands its messages to another; the store makes every task
safe to run twice (``_work``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_shutdown, worker_shutdown

from . import _work
from ._queue import REFRESH_TASK, claim, plan, publish, summary
from ._runtime import close_runtime, runtime
from ._settings import FleetSettings
from ._spread import spread

__all__ = ["KEEP_FRESH_TASK", "create_app", "install"]

log = logging.getLogger("flowengine.celery")
KEEP_FRESH_TASK = "flowengine.keep_fresh"
_TASK_OPTIONS: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}


def configuration(settings: FleetSettings) -> dict[str, Any]:
    """The Celery settings a fleet runs with (see docs/deploy.md for why each)."""
    transport: dict[str, Any] = {"visibility_timeout": settings.visibility_timeout}
    if settings.broker.startswith(("redis://", "rediss://")):
        # Recover a dead worker's messages soon after the visibility timeout, not up to 100 s later.
        transport |= {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
        if settings.broker_prefix:
            transport["global_keyprefix"] = settings.broker_prefix
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "task_default_queue": settings.queue,
        "worker_prefetch_multiplier": 1,
        "worker_pool": "threads",
        "worker_concurrency": settings.concurrency,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport,
        "beat_schedule": {
            "flowengine-keep-fresh": {
                "task": KEEP_FRESH_TASK,
                "schedule": settings.every,
                "options": {"queue": settings.queue, "expires": settings.every},
            }
        },
    }


def create_app(settings: FleetSettings | None = None) -> Celery:
    """A Celery app for the fleet: its broker, its configuration and its tasks."""
    settings = FleetSettings.from_env() if settings is None else settings
    app = Celery("flowengine", broker=settings.broker, set_as_current=False)
    app.conf.update(configuration(settings))
    install(app, settings)
    return app


def _run(task: Task[Any, Any], settings: FleetSettings, work: Any, *args: Any) -> dict[str, Any]:
    """Run a task's work on this process's engines; back to the queue when it says so."""
    rt = runtime(settings)
    try:
        outcome: _work.TaskResult = rt.run(work(rt, *args))
    except _work.Requeue as again:
        retries = task.request.retries
        if again.counted and retries >= settings.task_retries:
            log.warning("%s %s: gave up after %d retries (%s)", task.name, args[1:2], retries, again.reason)
            return {"item": str(args[1:2]), "outcome": "failed", "error": again.reason, "requests": 0}
        countdown = settings.retry.delay(retries, None) if again.counted else again.countdown
        raise task.retry(countdown=countdown, max_retries=None) from again
    said = f" ({outcome.error})" if outcome.error else ""
    redelivered = " (redelivered)" if (task.request.delivery_info or {}).get("redelivered") else ""
    log.info("%s %s: %s%s%s", task.name, outcome.item, outcome.outcome, said, redelivered)
    return outcome.to_json()


def install(app: Celery, settings: FleetSettings) -> None:
    """Add the fleet's tasks to ``app``: refresh, exchange, grant and keep_fresh."""

    @app.task(name=REFRESH_TASK, **_TASK_OPTIONS)
    def refresh(self: Task[Any, Any], spec: str, token_key: str, fingerprint: str) -> dict[str, Any]:
        """Refresh one token unless it was refreshed since it was planned."""
        return _run(self, settings, _work.refresh, spec, token_key, fingerprint)

    @app.task(name="flowengine.exchange", **_TASK_OPTIONS)
    def exchange(self: Task[Any, Any], spec: str, flow_id: str) -> dict[str, Any]:
        """Exchange the code of an authorized flow (at most once)."""
        return _run(self, settings, _work.exchange, spec, flow_id)

    @app.task(name="flowengine.grant", **_TASK_OPTIONS)
    def grant(self: Task[Any, Any], spec: str, grant: str, inputs: str) -> dict[str, Any]:
        """Run a grant with the inputs the worker's grants file names."""
        return _run(self, settings, _work.grant, spec, grant, inputs)

    @app.task(name=KEEP_FRESH_TASK, **_TASK_OPTIONS)
    def keep_fresh(self: Task[Any, Any]) -> dict[str, Any]:
        """Queue a refresh for every token expiring within the window, spread to keep to the limits."""
        rt = runtime(settings)
        orders = rt.run(plan(rt))
        scheduled = spread(orders, settings.account_limit, settings.client_limit)
        store = rt.run(rt.engine(settings.specs[0])).store
        claimed = rt.run(claim(store, scheduled, settings.every))
        publish(app, settings, claimed)
        done = summary(len(orders), claimed, settings)
        log.info("keep_fresh: queued %d, %d already queued, over %.0fs", done.queued, done.skipped, done.span)
        return {"queued": done.queued, "skipped": done.skipped, "span": done.span}

    del refresh, exchange, grant, keep_fresh


@worker_shutdown.connect(weak=False)
@worker_process_shutdown.connect(weak=False)
def _closing(**_: Any) -> None:
    """Save what the store has not taken yet, and close connections, as the worker stops."""
    close_runtime()
