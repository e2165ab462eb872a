"""Handing refreshes to the fleet: plan, spread, claim, publish.

``keep_fresh`` (the beat's task) and ``flowengine batch refresh --via celery``
(``CeleryQueue``, through the ``flowengine_refresh_queue`` hook) both end here:
the orders are spread in time (``_spread``), each is *claimed* in the store for
as long as it will wait in the queue (a lease ``queued:<key>:<fingerprint>``,
so the next beat, or an operator's run, does not queue it again), then sent to
the broker with its countdown. A message holds the spec, the token key and the
fingerprint: never a token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence

from celery import Celery
from flowengine import Enqueued, RateLimit, RefreshOrder, Store, open_store
from flowengine.cli import STORE_ENV

from ._runtime import FleetRuntime
from ._settings import FleetSettings, shown_url
from ._spread import spread

__all__ = ["REFRESH_TASK", "CeleryQueue", "claim", "plan", "publish"]

log = logging.getLogger("flowengine.celery")
REFRESH_TASK = "flowengine.refresh"


async def plan(rt: FleetRuntime) -> list[RefreshOrder]:
    """Every live token of the fleet's specs that expires within its window, soonest first."""
    now = time.time()
    orders: list[tuple[float, RefreshOrder]] = []
    for name in rt.settings.specs:
        engine = await rt.engine(name)
        for token in await engine.tokens():
            if token.dead or not token.refresh_token or not token.expires_within(rt.settings.window, now):
                continue
            order = RefreshOrder(
                name, token.key, token.fingerprint, str(token.account), engine.client.client_id
            )
            orders.append((token.expires_at or now, order))
    return [order for _, order in sorted(orders, key=lambda pair: (pair[0], pair[1].token_key))]


async def claim(
    store: Store, scheduled: Sequence[tuple[RefreshOrder, float]], every: float
) -> list[tuple[RefreshOrder, float]]:
    """The orders not queued already: each is claimed until it will have run (its countdown + ``every``)."""
    claimed = []
    for order, countdown in scheduled:
        lease = await store.acquire(f"queued:{order.token_key}:{order.fingerprint}", countdown + every + 60)
        if lease is not None:
            claimed.append((order, countdown))
    return claimed


def publish(app: Celery, settings: FleetSettings, scheduled: Sequence[tuple[RefreshOrder, float]]) -> None:
    """Send one refresh task per order to the fleet's queue, due after its countdown."""
    with app.producer_or_acquire() as producer:
        for order, countdown in scheduled:
            app.send_task(
                REFRESH_TASK,
                args=[order.spec, order.token_key, order.fingerprint],
                countdown=countdown or None,
                queue=settings.queue,
                producer=producer,
            )


def summary(planned: int, claimed: Sequence[tuple[RefreshOrder, float]], settings: FleetSettings) -> Enqueued:
    """What was done: queued, skipped (already queued), over how long, to which queue and broker."""
    span = max((countdown for _, countdown in claimed), default=0.0)
    where = f"queue {settings.queue} at {shown_url(settings.broker)}"
    return Enqueued(queued=len(claimed), skipped=planned - len(claimed), span=span, destination=where)


class CeleryQueue:
    """The ``celery`` queue of ``batch refresh --via``: the fleet's broker, from this environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)

    def enqueue_refreshes(
        self,
        orders: Sequence[RefreshOrder],
        *,
        store: str,
        account_limit: RateLimit | None,
        client_limit: RateLimit | None,
    ) -> Enqueued:
        """See ``flowengine.RefreshQueue``: the workers must use ``store`` too (Redis or PostgreSQL)."""
        from ._app import create_app

        settings = FleetSettings.from_env({**self._env, STORE_ENV: store})
        scheduled = spread(orders, account_limit, client_limit)
        claimed = asyncio.run(_claim_in(store, scheduled, settings.every))
        app = create_app(settings)
        try:
            publish(app, settings, claimed)
        finally:
            app.close()
        log.info("queued %d refresh(es) (%d already queued)", len(claimed), len(orders) - len(claimed))
        return summary(len(orders), claimed, settings)


async def _claim_in(
    url: str, scheduled: Sequence[tuple[RefreshOrder, float]], every: float
) -> list[tuple[RefreshOrder, float]]:
    store = open_store(url)
    try:
        return await claim(store, scheduled, every)
    finally:
        await store.aclose()
