"""The rate limiter a fleet shares: the batch's sliding window, kept where every worker sees it.

The batch counts calls in one process (``flowengine_batch``'s ``RateLimiter``).
A Celery fleet has many processes on many machines, so the same rule is kept in
a shared place, PostgreSQL or Redis (``_limiter_postgres``, ``_limiter_redis``),
and decided atomically there with the server's own clock:

    a call may start only while fewer than ``limit`` calls of its bucket are in
    flight or finished within the last ``period`` seconds.

Why that keeps any window of the provider below the limit is argued in
docs/batch.md ("The rate-limit model"). What changes with many processes is a
worker that dies mid-call: its call never says it finished. So a call in flight
is recorded as ending ``hold`` seconds after it started (longer than any
request may take: the transport's timeouts plus a margin), and a call that
finishes moves its end to the moment it finished. A dead worker's calls thus
keep their slots until ``hold + period`` after they started, then free them.

Buckets: one per account and API key (``account:CLIENT:ACCOUNT``, Podio's
limit), one per API key (``client:CLIENT``, your cap) when a client limit is
set. What answers say (``flowengine.read_rate_feedback``) applies to the
account's bucket: a lower limit for a period, a smaller remaining budget for a
period, a pause after a 420.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import attrs
from flowengine import ConfigError, RateFeedback, RateLimit, read_rate_feedback

__all__ = [
    "PODIO_LIMIT",
    "Bucket",
    "LimiterBackend",
    "SharedLimiter",
    "SharedPermit",
    "TooLong",
    "open_backend",
]

#: Podio's published limit: 1,000 calls an hour per user (or app) and API key.
PODIO_LIMIT = RateLimit(1000, 3600.0)
#: Polling while the bucket is full of calls still in flight (they say when they finish).
_POLL_FIRST, _POLL_MAX = 0.005, 0.1


@attrs.frozen
class Bucket:
    """One budget: its name in the shared store and its rule (``calls`` None: no local count)."""

    name: str
    calls: int | None
    period: float


class TooLong(Exception):
    """The limiter would hold this call longer than the caller may wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the rate limit allows this call in {wait:.1f}s")
        self.wait = wait


class LimiterBackend(Protocol):
    """Where the buckets live; every method is one atomic step on the shared server."""

    async def take(self, buckets: Sequence[Bucket], permit: str, hold: float) -> float:
        """Take a slot in every bucket or in none: 0 if taken, else seconds to wait (inf: calls in flight)."""
        ...

    async def finish(self, buckets: Sequence[Bucket], permit: str, *, sent: bool) -> None:
        """The call ended: its slot stays for a period if it was sent, else it is free at once."""
        ...

    async def observe(self, bucket: Bucket, feedback: RateFeedback) -> None:
        """Apply what an answer said to the account's bucket."""
        ...

    async def pause(self, bucket: Bucket, seconds: float) -> None:
        """Let no call of this bucket start for ``seconds`` (0: resume now)."""
        ...

    async def in_flight(self, bucket: Bucket) -> int:
        """Calls of this bucket started and not finished (a dead worker's count until their hold ends)."""
        ...

    async def aclose(self) -> None:
        """Close the connection."""
        ...


def open_backend(url: str) -> LimiterBackend:
    """The backend for a ``redis://`` or ``postgresql://`` URL (the store's URL, by default)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        from ._limiter_redis import RedisLimiter

        return RedisLimiter.from_url(url)
    if scheme in ("postgresql", "postgres"):
        from ._limiter_postgres import PostgresLimiter

        return PostgresLimiter.from_url(url)
    raise ConfigError(
        f"the fleet's rate limiter needs Redis or PostgreSQL, not {scheme}:// "
        "(set FLOWENGINE_CELERY_LIMITER, or use a redis:// or postgresql:// store)",
        code="store_not_shared",
    )


@attrs.define(eq=False)
class SharedPermit:
    """The right to send one call; ``finish`` it exactly once (``observe`` the answer first)."""

    limiter: SharedLimiter
    buckets: tuple[Bucket, ...]
    account: Bucket | None
    id: str
    finished: bool = False

    async def finish(self, *, sent: bool) -> None:
        """Give the slots back: a sent call keeps them for a period, an unsent one not at all."""
        if self.finished:
            return
        self.finished = True
        await self.limiter.backend.finish(self.buckets, self.id, sent=sent)

    async def observe(
        self, status: int, headers: Mapping[str, str], *, rate_limit_status: Iterable[int]
    ) -> None:
        """Learn from the answer: the provider's limit, what it says is left, a 420's pause."""
        if self.account is None:
            return
        feedback = read_rate_feedback(
            status,
            headers,
            rate_limit_status=rate_limit_status,
            default_pause=self.account.period,
            now=time.time(),
        )
        if _news(feedback, self.account):
            await self.limiter.backend.observe(self.account, feedback)


def _news(feedback: RateFeedback, bucket: Bucket) -> bool:
    """True when the answer may change the bucket (saves a round trip on most answers).

    A ``remaining`` of ``calls - 1`` or more cannot be below what the bucket
    expects, since this call itself is still counted in flight.
    """
    limit = math.inf if bucket.calls is None else bucket.calls
    if feedback.pause is not None or (feedback.limit is not None and feedback.limit < limit):
        return True
    return feedback.remaining is not None and feedback.remaining < limit - 1


class SharedLimiter:
    """Buckets per account and API key, and per API key, kept in a shared ``backend``.

    ``hold`` is how long a call in flight keeps its slot if its worker dies
    before it says it finished; it must exceed any request's duration.
    """

    def __init__(
        self,
        backend: LimiterBackend,
        account_limit: RateLimit | None = PODIO_LIMIT,
        client_limit: RateLimit | None = None,
        *,
        hold: float = 45.0,
    ) -> None:
        self.backend = backend
        self.account_limit = account_limit
        self.client_limit = client_limit
        self.hold = hold
        self._fallback = (account_limit or client_limit or PODIO_LIMIT).period

    def account_bucket(self, client_id: str, account: str) -> Bucket:
        """The bucket of one account and API key."""
        limit = self.account_limit
        return Bucket(
            f"account:{client_id}:{account}",
            limit.calls if limit else None,
            limit.period if limit else self._fallback,
        )

    def client_bucket(self, client_id: str) -> Bucket | None:
        """The bucket of one API key over all its accounts (None without a client limit)."""
        limit = self.client_limit
        return None if limit is None else Bucket(f"client:{client_id}", limit.calls, limit.period)

    def buckets(self, client_id: str, account: str | None) -> tuple[tuple[Bucket, ...], Bucket | None]:
        """Every bucket a call spends from, and the account's (which answers adjust)."""
        account_bucket = None if account is None else self.account_bucket(client_id, account)
        client_bucket = self.client_bucket(client_id)
        found = tuple(b for b in (account_bucket, client_bucket) if b is not None)
        return found, account_bucket

    async def acquire(
        self, client_id: str, account: str | None, *, max_wait: float = math.inf
    ) -> SharedPermit:
        """Wait until every bucket of the call has room, then take a slot in each.

        Raises ``TooLong`` once the wait still ahead exceeds ``max_wait`` seconds
        (a call whose account was closed by a 420 goes back to the queue).
        """
        buckets, account_bucket = self.buckets(client_id, account)
        permit = SharedPermit(self, buckets, account_bucket, uuid.uuid4().hex)
        if not buckets:
            return permit
        deadline = time.monotonic() + max_wait
        poll = _POLL_FIRST
        while True:
            wait = await self.backend.take(buckets, permit.id, self.hold)
            if wait <= 0:
                return permit
            left = deadline - time.monotonic()
            if (wait != math.inf and wait > left) or left <= 0:
                # Calls in flight free their slots within their hold: a finite bound to come back after.
                raise TooLong(wait if wait != math.inf else self.hold)
            if wait == math.inf:  # full of calls in flight: one of them frees a slot when it ends
                await asyncio.sleep(min(poll, left))
                poll = min(poll * 2, _POLL_MAX)
            else:
                await asyncio.sleep(wait)

    async def pause(self, client_id: str, seconds: float, *, account: str | None = None) -> None:
        """Let no call of this API key (or of one of its accounts) start for ``seconds``; 0 resumes.

        An operator's brake: the provider asked the whole fleet to stop, or a
        test wants no request on the wire while it kills a worker.
        """
        bucket = self.account_bucket(client_id, account) if account else self._client_or_fail(client_id)
        await self.backend.pause(bucket, seconds)

    async def in_flight(self, client_id: str) -> int:
        """Calls of this API key started and not finished, fleet-wide (needs a client limit)."""
        return await self.backend.in_flight(self._client_or_fail(client_id))

    def _client_or_fail(self, client_id: str) -> Bucket:
        bucket = self.client_bucket(client_id)
        if bucket is None:
            raise ConfigError("pausing or counting a whole API key needs a client rate limit")
        return bucket

    async def aclose(self) -> None:
        """Close the backend's connection."""
        await self.backend.aclose()
