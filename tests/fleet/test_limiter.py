"""The fleet's shared limiter, on PostgreSQL and on Redis: the batch's window, kept across processes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import flowengine as fe
import pytest

from flowengine_celery import SharedLimiter, TooLong, open_backend


@pytest.fixture
async def two(shared_url: str) -> AsyncIterator[tuple[SharedLimiter, SharedLimiter]]:
    """Two limiters on the same shared state, as two worker processes would hold them."""
    made = []

    def make(account: fe.RateLimit | None, client: fe.RateLimit | None) -> SharedLimiter:
        limiter = SharedLimiter(open_backend(shared_url), account, client, hold=60)
        made.append(limiter)
        return limiter

    yield make(fe.RateLimit(2, 60), fe.RateLimit(3, 60)), make(fe.RateLimit(2, 60), fe.RateLimit(3, 60))
    for limiter in made:
        await limiter.aclose()


async def test_a_full_bucket_waits_for_a_call_in_flight_then_for_the_window(
    two: tuple[SharedLimiter, SharedLimiter],
) -> None:
    one, other = two
    first = await one.acquire("c", "app:1")
    second = await other.acquire("c", "app:1")
    bucket = one.account_bucket("c", "app:1")
    assert await one.backend.take([bucket], "probe", 60) == math.inf, "two calls in flight, from two workers"
    await first.finish(sent=True)
    wait = await one.backend.take([bucket], "probe", 60)
    assert 59 < wait <= 60, "a slot frees a period after its call finished"
    await second.finish(sent=False)
    third = await other.acquire("c", "app:1", max_wait=0)  # never sent: its slot is free at once
    await third.finish(sent=False)
    assert await one.in_flight("c") == 0


async def test_the_client_bucket_counts_every_account_of_the_key(
    two: tuple[SharedLimiter, SharedLimiter],
) -> None:
    one, other = two
    permits = [
        await one.acquire("c", "app:1"),
        await other.acquire("c", "app:2"),
        await one.acquire("c", None),
    ]
    assert await other.in_flight("c") == 3
    with pytest.raises(TooLong):
        await other.acquire("c", "app:3", max_wait=0.05)
    assert (await other.acquire("d", "app:3", max_wait=0)).id, "another key has its own budget"
    with pytest.raises(TooLong) as caught:
        await other.acquire("c", "app:4", max_wait=0.05)
    assert caught.value.wait == other.hold, "full of calls in flight: back within their hold, not never"
    for permit in permits:
        await permit.finish(sent=True)
    assert await other.in_flight("c") == 0


async def test_at_most_the_limit_start_at_once_among_racing_workers(
    two: tuple[SharedLimiter, SharedLimiter],
) -> None:
    one, other = two

    async def try_one(limiter: SharedLimiter) -> bool:
        try:
            await limiter.acquire("c", "app:9", max_wait=0.2)
        except TooLong:
            return False
        return True

    won = await asyncio.gather(*(try_one(limiter) for limiter in [one, other] * 10))
    assert sum(won) == 2, "the account's limit is 2 in any window, whoever asks"


async def test_answers_adjust_the_account_budget(two: tuple[SharedLimiter, SharedLimiter]) -> None:
    one, other = two
    statuses = (420, 429)
    permit = await one.acquire("c", "app:1")
    await permit.observe(420, {"retry-after": "30"}, rate_limit_status=statuses)
    await permit.finish(sent=True)
    with pytest.raises(TooLong) as caught:
        await other.acquire("c", "app:1", max_wait=5)
    assert 29 < caught.value.wait <= 30, "a 420 closes the account for Retry-After, fleet-wide"

    lowered = await one.acquire("c", "app:2")
    await lowered.observe(
        200, {"x-rate-limit-limit": "1", "x-rate-limit-remaining": "0"}, rate_limit_status=statuses
    )
    await lowered.finish(sent=True)
    with pytest.raises(TooLong):
        await other.acquire("c", "app:2", max_wait=5)

    big = SharedLimiter(one.backend, fe.RateLimit(100, 60), None)
    spent = await big.acquire("c", "app:3")
    await spent.observe(200, {"x-rate-limit-remaining": "1"}, rate_limit_status=statuses)
    await spent.finish(sent=True)
    await (await big.acquire("c", "app:3", max_wait=0)).finish(sent=True)  # the one the server says is left
    with pytest.raises(TooLong):
        await big.acquire("c", "app:3", max_wait=5)


async def test_a_pause_stops_every_worker_until_it_ends_or_is_lifted(
    two: tuple[SharedLimiter, SharedLimiter],
) -> None:
    one, other = two
    await one.pause("c", 600)
    with pytest.raises(TooLong) as caught:
        await other.acquire("c", "app:1", max_wait=1)
    assert caught.value.wait > 599
    await one.pause("c", 0)
    await (await other.acquire("c", "app:1", max_wait=0)).finish(sent=False)
    with pytest.raises(fe.ConfigError):
        await SharedLimiter(one.backend, fe.RateLimit(1, 1), None).pause("c", 1)


async def test_a_dead_workers_call_keeps_its_slot_until_its_hold_and_a_period_end(shared_url: str) -> None:
    limiter = SharedLimiter(open_backend(shared_url), fe.RateLimit(1, 0.2), None, hold=0.3)
    try:
        await limiter.acquire("c", "app:1")  # never finished: its worker "died"
        wait = await limiter.backend.take([limiter.account_bucket("c", "app:1")], "probe", 0.3)
        assert wait == math.inf
        started = asyncio.get_running_loop().time()
        await (await limiter.acquire("c", "app:1", max_wait=5)).finish(sent=False)
        assert asyncio.get_running_loop().time() - started >= 0.3, "not before the hold ran out"
    finally:
        await limiter.aclose()


def test_only_shared_servers_can_hold_a_fleets_limits() -> None:
    with pytest.raises(fe.ConfigError) as caught:
        open_backend("sqlite:///tokens.db")
    assert caught.value.code == "store_not_shared"
