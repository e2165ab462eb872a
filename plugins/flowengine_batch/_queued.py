"""``batch refresh --via QUEUE``: plan the refreshes here, let workers elsewhere run them.

The batch plans as it always does (the stored tokens of the providers, those
expiring within the duration) and hands the plan to the queue a plugin provides
through the ``flowengine_refresh_queue`` hook (``celery``: the Celery fleet of
``flowengine_celery``). The batch knows nothing of the queue but that hook: the
queue spreads the refreshes to keep to the rate limits, and its workers refresh
each token once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import click
from flowengine import PluginError, RateLimit, RefreshOrder, get_plugin_manager
from flowengine.cli import EXIT_OK, format_duration, opened_store

__all__ = ["enqueue", "plan_orders"]


async def plan_orders(store: str, providers: Sequence[str], within: float | None) -> list[RefreshOrder]:
    """The live tokens to refresh (of ``providers``, or all), soonest expiry first, as orders."""
    now = time.time()
    async with opened_store(store, reading=True) as opened:
        tokens = await opened.list_tokens()
    wanted = set(providers)
    chosen = [
        token
        for token in tokens
        if (not wanted or token.provider in wanted)
        and not token.dead
        and token.refresh_token
        and (within is None or token.expires_within(within, now))
    ]
    chosen.sort(key=lambda token: (token.expires_at or now, token.key))
    return [
        RefreshOrder(token.provider, token.key, token.fingerprint, str(token.account), token.client_id or "")
        for token in chosen
    ]


async def enqueue(
    via: str,
    store: str,
    providers: Sequence[str],
    within: float | None,
    limits: tuple[RateLimit | None, RateLimit | None],
    *,
    quiet: bool,
) -> int:
    """Queue the planned refreshes through the ``via`` queue; say how many, and where."""
    queue = get_plugin_manager().hook.flowengine_refresh_queue(via=via)
    if queue is None:
        raise PluginError(
            f"no installed plugin queues refreshes via {via!r} "
            "(the Celery fleet: pip install 'flowengine[celery]', then --via celery)",
            code="queue_unsupported",
        )
    orders = await plan_orders(store, providers, within)
    done = await asyncio.to_thread(
        queue.enqueue_refreshes, orders, store=store, account_limit=limits[0], client_limit=limits[1]
    )
    if not quiet:
        click.echo(
            f"refresh: {done.queued} token(s) queued via {via}, {done.skipped} already queued; "
            f"due over {format_duration(done.span)} ({done.destination})",
            err=True,
        )
    return EXIT_OK
