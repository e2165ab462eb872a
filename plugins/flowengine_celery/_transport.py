"""The transport a worker gives its engines: every request waits for a permit of the shared limiter.

As in the batch (``flowengine_batch._transport``), the limiter sits at the
transport seam, so the engine's own retries pass it too. The task in hand is
known from a context variable the task sets (the engine's coroutines inherit
it): whose budget the request spends, and the permit the task took before it
called the engine, so that it never waits for the limiter while holding the
store lease. A retry inside the engine waits at most ``max_wait``; a longer wait
raises ``Deferred`` (nothing was sent) and the task goes back to the queue.
A refresh task's first request also takes a ``SendMarker`` in the store,
so that no redelivered copy of a task whose worker died mid-request sends it again.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable

import attrs
from flowengine import HttpRequest, HttpResponse, Lease, Store, Transport, TransportError

from ._limiter import SharedLimiter, SharedPermit, TooLong

__all__ = ["Deferred", "FleetTransport", "Interrupted", "SendMarker", "TaskScope", "current_task"]

log = logging.getLogger("flowengine.celery")


class Deferred(TransportError):
    """The rate limit allows this request only in ``wait`` seconds; it was not sent."""

    def __init__(self, wait: float) -> None:
        super().__init__(
            f"the rate limit allows this request in {wait:.0f}s; deferred",
            code="rate_limit_deferred",
            retryable=False,
            sent=False,
        )
        self.wait = wait


class Interrupted(TransportError):
    """A worker that died may have sent this refresh already: it is not sent again for a while."""

    def __init__(self) -> None:
        super().__init__(
            "an earlier delivery of this task may have sent this refresh and died before its answer "
            "was stored; it is not sent again yet",
            code="refresh_interrupted",
            retryable=False,
            sent=False,
        )


@attrs.define(eq=False)
class SendMarker:
    """A store lease taken just before a refresh's first request, kept while the task lives.

    A task that finishes gives it back; a worker that dies keeps it until its
    ``ttl`` ends, so a redelivered copy of the task finds it and sends nothing
    (the request may have reached the provider, which may have rotated the
    refresh token: sending it again would at best be a second refresh).
    """

    store: Store
    key: str
    ttl: float
    held: Lease | None = None

    async def take(self) -> None:
        """Hold the marker (once per task); ``Interrupted`` when a dead worker's copy still holds it."""
        if self.held is None:
            self.held = await self.store.acquire(self.key, self.ttl)
            if self.held is None:
                raise Interrupted

    async def give_back(self) -> None:
        """The task is over, whatever its outcome: the next refresh of this token may send.

        A store that fails here changes nothing: the marker names the fingerprint
        the task saw, which a refreshed token no longer has, and it expires.
        """
        if self.held is not None:
            held, self.held = self.held, None
            try:
                await self.store.release(held)
            except Exception:
                log.warning("could not give back the send marker %s; it expires on its own", held.key)


@attrs.define(eq=False)
class TaskScope:
    """The task in hand: whose budget it spends, its first permit, its send marker, what it sent."""

    client_id: str
    account: str | None
    permit: SharedPermit | None = None
    marker: SendMarker | None = None
    requests: int = 0


current_task: contextvars.ContextVar[TaskScope | None] = contextvars.ContextVar(
    "flowengine_celery_task", default=None
)


class FleetTransport:
    """Wraps a Transport: each request waits for the shared limiter and reports what the answer said."""

    def __init__(
        self,
        inner: Transport,
        limiter: SharedLimiter,
        *,
        rate_limit_status: Iterable[int] = (420, 429),
        max_wait: float = 10.0,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.rate_limit_status = frozenset(rate_limit_status)
        self.max_wait = max_wait

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send once the task's buckets have room; learn from the answer; give the slot back."""
        scope = current_task.get()
        if scope is None:
            return await self.inner.send(request)
        if scope.marker is not None:
            await scope.marker.take()  # before any permit: an interrupted refresh spends no budget
        permit, scope.permit = scope.permit, None
        if permit is None:
            try:
                permit = await self.limiter.acquire(scope.client_id, scope.account, max_wait=self.max_wait)
            except TooLong as exc:
                raise Deferred(exc.wait) from None
        scope.requests += 1
        try:
            response = await self.inner.send(request)
        except TransportError as exc:
            await permit.finish(sent=exc.sent)
            raise
        except BaseException:
            await permit.finish(sent=True)  # cancelled mid-request: it may have reached the server
            raise
        try:
            await permit.observe(response.status, response.headers, rate_limit_status=self.rate_limit_status)
        finally:
            await permit.finish(sent=True)
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()
