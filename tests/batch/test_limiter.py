"""The client-side limiter (flowengine_batch.RateLimiter): its window, and what it learns from answers."""

from __future__ import annotations

import asyncio
import time

import flowengine as fe
import pytest

from flowengine_batch import Batch, RateLimit, RateLimiter
from flowengine_batch._limits import Stopped, TooLong
from tests.conftest import SandboxFixture
from tests.support.clock import FakeClock


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000/1h", RateLimit(1000, 3600)), ("250/h", RateLimit(250, 3600)), ("50/2s", RateLimit(50, 2)),
     ("5/300", RateLimit(5, 300)), ("10/0.5s", RateLimit(10, 0.5)), ("none", None)],
)  # fmt: skip
def test_rates_parse(text: str, expected: RateLimit | None) -> None:
    assert RateLimit.parse(text) == expected


@pytest.mark.parametrize("text", ["lots", "0/1h", "10/0s", "1000/1w", "-1/h"])
def test_bad_rates_are_config_errors(text: str) -> None:
    with pytest.raises(fe.ConfigError):
        RateLimit.parse(text)


async def test_a_slot_comes_free_a_period_after_its_call_finished() -> None:
    limiter = RateLimiter(RateLimit(2, 0.2))
    first = await limiter.acquire("c", "user:1")
    second = await limiter.acquire("c", "user:1")
    waiting = asyncio.create_task(limiter.acquire("c", "user:1"))
    await asyncio.sleep(0)
    assert not waiting.done(), "both slots are in flight"
    finished = time.monotonic()
    first.finish(sent=True)
    await waiting
    assert time.monotonic() - finished >= 0.2 - 0.01
    second.finish(sent=False)  # never sent: its slot is free at once
    assert limiter.wait_time("c", "user:1") == 0
    assert limiter.wait_time("c", "user:2") == 0, "another account has its own budget"


async def test_a_420_closes_the_account_for_retry_after_and_remaining_is_believed() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(100, 60), clock=clock.now)
    permit = await limiter.acquire("c", "app:1")
    permit.observe(420, {"retry-after": "30", "x-rate-limit-remaining": "0"}, rate_limit_status={420})
    permit.finish(sent=True)
    assert limiter.wait_time("c", "app:1") == 30
    with pytest.raises(TooLong):
        await limiter.acquire("c", "app:1", max_wait=1)
    clock.advance(29)
    assert limiter.wait_time("c", "app:1") == 1
    other = await limiter.acquire("c", "app:2")
    other.observe(200, {"x-rate-limit-remaining": "1", "x-rate-limit-limit": "250"}, rate_limit_status={420})
    other.finish(sent=True)
    (await limiter.acquire("c", "app:2")).finish(sent=True)  # the one call the server says is left
    assert limiter.wait_time("c", "app:2") > 50, (
        "someone else spends this budget: wait for the server's window"
    )


async def test_a_stopping_run_stops_waiting() -> None:
    limiter = RateLimiter(RateLimit(1, 60))
    await limiter.acquire("c", "a")
    stop = False
    waiting = asyncio.create_task(limiter.acquire("c", "a", stopping=lambda: stop))
    await asyncio.sleep(0)
    stop = True
    limiter.wake()
    with pytest.raises(Stopped):
        await waiting


async def test_the_client_cap_spans_accounts() -> None:
    limiter = RateLimiter(None, RateLimit(1, 60))
    await limiter.acquire("c", "a")
    assert limiter.wait_time("c", "b") == float("inf"), "waits for the call in flight"
    assert limiter.wait_time("other-client", "b") == 0


async def test_engines_must_come_from_the_batch(sandbox: SandboxFixture) -> None:
    async with fe.AsyncEngine("podio", client=sandbox.client, endpoints=sandbox.endpoints) as engine:
        with pytest.raises(fe.ConfigError, match=r"batch\.engine"):
            Batch().refresh(engine)
