"""The transport a batch gives its engines: every request passes the rate limiter.

The engine retries refreshes and grants by itself, inside one call, so a limiter
that only gated whole items would not see the retries. This wrapper sits at the
transport seam instead and gates each request. It learns which item a request
belongs to from a context variable the runner sets (the engine's tasks inherit
it), which also lets it count the requests each item sent.

The runner takes the item's first permit before it calls the engine, so an item
never waits for the limiter while holding the engine's store lease or after its
flow was marked as exchanging. Later requests (the engine's retries) wait here,
but only briefly: a longer wait raises ``RateLimitDeferred`` (nothing was sent),
and the runner waits outside the engine, then runs the item again. Once the run
is stopping, a request that is not on the wire yet is refused with ``BatchStopped``:
refreshes and grants are then retried by a rerun, and an exchange keeps its flow
``authorized`` (the engine's rule for a request that was not sent).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable

import attrs
from flowengine import HttpRequest, HttpResponse, Transport, TransportError

from ._limits import Permit, RateLimiter, Stopped, TooLong

__all__ = ["BatchStopped", "ItemScope", "LimitedTransport", "RateLimitDeferred", "current_item"]


class BatchStopped(TransportError):
    """The run is stopping: this request was not sent."""

    def __init__(self) -> None:
        super().__init__(
            "the batch is stopping; this request was not sent",
            code="batch_stopped",
            retryable=False,
            sent=False,
        )


class RateLimitDeferred(TransportError):
    """The rate limit allows this request only later; it was not sent, the runner retries the item."""

    def __init__(self, wait: float) -> None:
        super().__init__(
            f"the rate limit allows this request in {wait:.0f}s; deferred",
            code="rate_limit_deferred",
            retryable=False,
            sent=False,
        )
        self.wait = wait


@attrs.define(eq=False)
class ItemScope:
    """What the transport knows of the item in hand: whose budget it spends, what it sent."""

    client_id: str
    account: str | None
    stopping: Callable[[], bool]
    permit: Permit | None = None  # taken by the runner for the first request
    requests: int = 0


current_item: contextvars.ContextVar[ItemScope | None] = contextvars.ContextVar(
    "flowengine_batch_item", default=None
)


class LimitedTransport:
    """Wraps a Transport: each request waits for the limiter and reports what the answer said.

    Requests made outside a batch item (none in practice) go straight through.
    ``max_wait`` bounds a wait inside the engine (it holds a store lease
    meanwhile); longer waits are deferred to the runner.
    """

    def __init__(
        self,
        inner: Transport,
        limiter: RateLimiter,
        *,
        rate_limit_status: Iterable[int] = (420, 429),
        max_wait: float = 10.0,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.rate_limit_status = frozenset(rate_limit_status)
        self.max_wait = max_wait

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send the request once the item's buckets have room; learn from the answer."""
        scope = current_item.get()
        if scope is None:
            return await self.inner.send(request)
        if scope.stopping():
            raise BatchStopped
        permit, scope.permit = scope.permit, None
        if permit is None:
            try:
                permit = await self.limiter.acquire(
                    scope.client_id, scope.account, stopping=scope.stopping, max_wait=self.max_wait
                )
            except Stopped:
                raise BatchStopped from None
            except TooLong as exc:
                raise RateLimitDeferred(exc.wait) from None
        scope.requests += 1
        try:
            response = await self.inner.send(request)
        except TransportError as exc:
            permit.finish(sent=exc.sent)
            raise
        except BaseException:
            permit.finish(sent=True)  # cancelled mid-request: it may have reached the server
            raise
        permit.observe(response.status, response.headers, rate_limit_status=self.rate_limit_status)
        permit.finish(sent=True)
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()
