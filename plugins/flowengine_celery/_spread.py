"""Spreading planned refreshes in time, so the queue hands them out at the rate the limits allow.

The workers' shared limiter is what guarantees the limits; the spread is what
keeps them from having to: a refresh is enqueued with a countdown such that,
were each sent at its due time, no account and no API key would get more than
its ``calls`` in any ``period``. Then workers rarely wait for a permit, and a
burst of 100,000 expiring tokens is a steady stream rather than a wall.

Orders are taken round by round (every account's first token, then every
account's second, ...), soonest expiry first within a round, so one account
with many tokens delays only its own.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence

from flowengine import RateLimit, RefreshOrder

__all__ = ["spread"]


class _Slots:
    """Due times given to one bucket so far, to find the next time it has room."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.times: deque[float] = deque()

    def earliest(self, at: float) -> float:
        """The first time at or after ``at`` when the bucket has fewer than ``calls`` in a period."""
        if len(self.times) < self.limit.calls:
            return at
        return max(at, self.times[-self.limit.calls] + self.limit.period)

    def take(self, at: float) -> None:
        self.times.append(at)


def _rounds(orders: Sequence[RefreshOrder]) -> list[RefreshOrder]:
    """Every account's first order, then every account's second, ..., in the orders' own order."""
    seen: defaultdict[tuple[str, str], int] = defaultdict(int)
    ranked = []
    for index, order in enumerate(orders):
        key = (order.client_id, order.account)
        ranked.append((seen[key], index, order))
        seen[key] += 1
    return [order for _, _, order in sorted(ranked, key=lambda item: item[:2])]


def spread(
    orders: Sequence[RefreshOrder], account_limit: RateLimit | None, client_limit: RateLimit | None
) -> list[tuple[RefreshOrder, float]]:
    """Each order with its countdown in seconds (0 for the first), in the order they fall due."""
    accounts: dict[tuple[str, str], _Slots] = {}
    clients: dict[str, _Slots] = {}
    scheduled = []
    at = 0.0
    for order in _rounds(orders):
        buckets = []
        if account_limit is not None:
            key = (order.client_id, order.account)
            buckets.append(accounts.setdefault(key, _Slots(account_limit)))
        if client_limit is not None:
            buckets.append(clients.setdefault(order.client_id, _Slots(client_limit)))
        due = max((bucket.earliest(at) for bucket in buckets), default=at)
        for bucket in buckets:
            bucket.take(due)
        scheduled.append((order, due))
        at = due  # due times never go back, so every bucket's times stay sorted
    return scheduled
