"""The client-side rate limiter: never more calls in any window than the provider allows.

Podio counts calls per user (or app) and API key in windows it does not
announce (no reset header), so this limiter makes no guess about where a window
starts. It keeps, per bucket, a log of when each call *finished* and counts the
calls still in flight: a new call may start only while fewer than ``limit``
calls are in flight or finished within the last ``period`` seconds. Since the
server receives a call somewhere between its start and its end, any window of
``period`` seconds on the server's clock then holds at most ``limit`` of them,
wherever the server's windows begin (see docs/batch.md for the argument).
A leaky or token bucket would not give that: it lets a full burst through at
the end of one window and another at the start of the next.

Two kinds of bucket: per account and API key (Podio's limit) and, optionally,
per API key across accounts (a cap of your own). The provider's answers adjust
them: ``X-Rate-Limit-Limit`` lowers an account's limit, ``X-Rate-Limit-Remaining``
below what the log expects means someone else spends the same budget, and a
420 (or 429) closes the account's bucket for ``Retry-After`` seconds, or for a
whole period when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

import attrs
from flowengine import RateLimit, read_rate_feedback

__all__ = ["PODIO_LIMIT", "Permit", "RateLimit", "RateLimiter", "Stopped", "TooLong"]

#: Podio's published limit: 1,000 calls an hour per user (or app) and API key.
PODIO_LIMIT = RateLimit(1000, 3600.0)


class Stopped(Exception):
    """The run stopped while this call waited for the limiter."""


class TooLong(Exception):
    """The limiter would hold this call longer than the caller may wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the rate limit allows this call in {wait:.1f}s")
        self.wait = wait


class _Bucket:
    """One budget: calls in flight plus a log of recent finishes, and what the server said."""

    __slots__ = ("blocked_until", "budget", "budget_until", "done", "inflight", "limit", "period")

    def __init__(self, limit: RateLimit | None, fallback_period: float) -> None:
        self.limit: float = limit.calls if limit else math.inf
        self.period = limit.period if limit else fallback_period
        self.inflight = 0
        self.done: deque[float] = deque()
        self.blocked_until = 0.0
        self.budget: int | None = None  # what the server says is left, when less than we think
        self.budget_until = 0.0

    def wait(self, now: float) -> float:
        """Seconds until a call may start (0: now; inf: when a call in flight ends)."""
        if now < self.blocked_until:
            return self.blocked_until - now
        if self.budget is not None:
            if now >= self.budget_until:
                self.budget = None
            elif self.budget <= 0:
                return self.budget_until - now
        horizon = now - self.period
        while self.done and self.done[0] <= horizon:
            self.done.popleft()
        if self.inflight + len(self.done) < self.limit:
            return 0.0
        return self.done[0] + self.period - now if self.done else math.inf

    def take(self) -> None:
        self.inflight += 1
        if self.budget is not None:
            self.budget -= 1

    def finish(self, now: float, *, sent: bool) -> None:
        self.inflight -= 1
        if sent and self.limit != math.inf:
            self.done.append(now)

    def free(self, now: float) -> float:
        """Calls the log would still allow in this period."""
        self.wait(now)  # drops old entries
        return self.limit - self.inflight - len(self.done)


@attrs.define(eq=False)
class Permit:
    """The right to send one call, taken from each bucket it names; finish it exactly once."""

    limiter: RateLimiter
    buckets: tuple[_Bucket, ...]
    account: _Bucket | None
    used: bool = False
    finished: bool = False

    def finish(self, *, sent: bool) -> None:
        """Give the slots back: a sent call stays in the log for a period, an unsent one not at all."""
        if self.finished:
            return
        self.finished = True
        now = self.limiter.clock()
        for bucket in self.buckets:
            bucket.finish(now, sent=sent)
        self.limiter.wake()

    def observe(self, status: int, headers: Mapping[str, str], *, rate_limit_status: Iterable[int]) -> None:
        """Learn from the answer: the provider's limit, what it says is left, a 420's pause."""
        bucket = self.account
        if bucket is None:
            return
        now = self.limiter.clock()
        said = read_rate_feedback(
            status, headers, rate_limit_status=rate_limit_status, default_pause=bucket.period, now=time.time()
        )
        if said.limit is not None and said.limit < bucket.limit:
            bucket.limit = said.limit  # e.g. Podio's 250 for heavy operations
        if said.remaining is not None and said.remaining < bucket.free(now):
            # Someone else spends this budget too: trust the server until a period has passed.
            bucket.budget, bucket.budget_until = said.remaining, now + bucket.period
        if said.pause is not None:
            bucket.blocked_until = max(bucket.blocked_until, now + said.pause)


class RateLimiter:
    """Buckets per account and API key (Podio's limit) and per API key (your cap), shared by a run.

    ``account_limit`` None keeps no local count per account but still obeys
    what the provider's answers say; ``client_limit`` None sets no cap per key.
    """

    def __init__(
        self,
        account_limit: RateLimit | None = PODIO_LIMIT,
        client_limit: RateLimit | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account_limit = account_limit
        self.client_limit = client_limit
        self.clock = clock
        self._accounts: dict[tuple[str, str], _Bucket] = {}
        self._clients: dict[str, _Bucket] = {}
        self._changed = asyncio.Event()
        #: Calls waiting in ``acquire`` for a slot.
        self._waiting = 0

    def _buckets(self, client_id: str, account: str | None) -> tuple[tuple[_Bucket, ...], _Bucket | None]:
        fallback = (self.account_limit or self.client_limit or PODIO_LIMIT).period
        buckets: list[_Bucket] = []
        account_bucket = None
        if account is not None:
            account_bucket = self._accounts.get((client_id, account))
            if account_bucket is None:
                account_bucket = self._accounts[(client_id, account)] = _Bucket(self.account_limit, fallback)
            buckets.append(account_bucket)
        if self.client_limit is not None:
            client_bucket = self._clients.get(client_id)
            if client_bucket is None:
                client_bucket = self._clients[client_id] = _Bucket(self.client_limit, fallback)
            buckets.append(client_bucket)
        return tuple(buckets), account_bucket

    def wait_time(self, client_id: str, account: str | None) -> float:
        """Seconds until a call for this account could start (0: now)."""
        buckets, _ = self._buckets(client_id, account)
        now = self.clock()
        return max((b.wait(now) for b in buckets), default=0.0)

    async def acquire(
        self,
        client_id: str,
        account: str | None,
        *,
        stopping: Callable[[], bool] = lambda: False,
        max_wait: float = math.inf,
    ) -> Permit:
        """Wait until every bucket of the call has room, then take a slot in each.

        Raises ``Stopped`` when ``stopping()`` turns true while waiting, and
        ``TooLong`` at once when the wait would exceed ``max_wait``.
        """
        buckets, account_bucket = self._buckets(client_id, account)
        while True:
            if stopping():
                raise Stopped
            now = self.clock()
            wait = max((b.wait(now) for b in buckets), default=0.0)
            if wait <= 0:
                for bucket in buckets:
                    bucket.take()
                return Permit(self, buckets, account_bucket)
            if wait > max_wait:
                raise TooLong(wait)
            changed = self._changed
            self._waiting += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), None if wait == math.inf else wait)
            finally:
                self._waiting -= 1

    def wake(self) -> None:
        """Let every waiting call look again (a slot came free, or the run is stopping).

        With no call waiting (most of the time) there is no one to wake.
        """
        if self._waiting:
            self._changed.set()
            self._changed = asyncio.Event()
