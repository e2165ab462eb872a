"""The issue's proof at CI size: many tokens refreshed through faults, within the sandbox's limits.

The full sizes (2,000 and 10,000 tokens) are in ``benchmarks/batch.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import flowengine as fe
import pytest

from flowengine_batch import Batch, RateLimit
from flowengine_batch._limits import Permit
from flowengine_sandbox.faults import Fault, FaultPlan
from tests.batch.conftest import FAST_RETRY, app_engine, refresh_tokens_of, seed_tokens, successful_refreshes
from tests.conftest import SandboxFixture

# Slow lane: hundreds of tokens through the limiter.
pytestmark = pytest.mark.slow

TOKENS = 200
#: The engine's typed reasons (docs/index.md) a refresh may end with.
TYPED = {
    "invalid_grant",
    "provider_unavailable",
    "rate_limited",
    "transport_error",
    "transport_timeout",
    "invalid_token_response",
    "provider_error",
}


def count_held_back(batch: Batch) -> Callable[[], int]:
    """Count the calls that found the client's budget spent when they asked (the limit binding)."""
    limiter, acquire = batch.limiter, batch.limiter.acquire
    count = 0

    async def counting(client_id: str, account: str | None, **options: Any) -> Permit:
        nonlocal count
        count += limiter.wait_time(client_id, None) > 0  # None: the client bucket alone
        return await acquire(client_id, account, **options)

    limiter.acquire = counting  # type: ignore[method-assign]
    return lambda: count


def ten_percent_faults(seed: int) -> FaultPlan:
    """A seeded 10% of token requests fail, in every way issue 6 names."""
    return FaultPlan(
        [
            Fault("status", share=0.03),  # 503, nothing processed
            Fault("status", status=500, share=0.01),
            Fault("rate_limit", share=0.02, retry_after=0),  # 420 with X-Rate-Limit headers
            Fault("html", status=502, share=0.01),  # a proxy's error page
            Fault("reset", stage="before", share=0.01),  # the connection breaks before processing
            Fault("latency", delay=0.05, share=0.01),
            Fault("reset", share=0.01),  # after: refreshed at the sandbox, the answer lost
        ],
        seed=seed,
    )


async def test_200_tokens_with_10_percent_faults_each_once_within_the_limits(
    sandbox: SandboxFixture, store_url: str
) -> None:
    keys = await seed_tokens(sandbox, store_url, TOKENS)
    sandbox.settings.rate_limit_window = 0.5
    sandbox.settings.rate_limit = 3  # per app and key: binds on an app that is retried fast
    sandbox.settings.client_rate_limit = 40  # per key: binds on the whole run
    sandbox.settings.faults = ten_percent_faults(seed=3)
    # More workers than the client limit has slots: the limit binds by construction, however
    # fast or slow the machine is (a count of calls per half second would depend on that).
    batch = Batch(
        concurrency=48, account_limit=RateLimit(3, 0.5), client_limit=RateLimit(40, 0.5), retry=FAST_RETRY
    )
    held_back = count_held_back(batch)
    async with app_engine(batch, sandbox, store_url) as engine:
        before = await refresh_tokens_of(engine, keys)
        report = await batch.refresh(engine).wait()
        stored = {key: await engine.get_token(key) for key in keys}

    assert sorted(report.results) == keys
    assert report.complete
    for key, result in report.results.items():
        token = stored[key]
        assert token is not None
        if result.outcome == "refreshed":
            assert token.refresh_token != before[key] and not token.dead
        else:
            assert result.outcome in ("dead", "failed"), result
            assert result.error in TYPED, result
            assert token.dead == (result.outcome == "dead")
    assert report.counts.get("refreshed", 0) >= TOKENS * 0.95, report.counts
    injected = sandbox.settings.faults.injected()
    assert len(injected) >= TOKENS * 0.05, "the faults were injected"
    # None refreshed twice: one successful refresh per token at most, never one of a rotated token.
    refreshed = successful_refreshes(sandbox, before)
    assert "<rotated>" not in refreshed
    assert max(refreshed.values()) == 1
    assert len(refreshed) >= report.counts["refreshed"]
    # The sandbox never saw more calls per window than its limits, and never had to refuse one.
    ledger = sandbox.settings.rate_limits
    assert ledger.peak("client") <= 40
    assert ledger.peak("account") <= 3
    assert ledger.rejected() == 0
    assert held_back(), "the client limit held calls back, so it was tested"


async def test_per_account_limit_spaces_the_retries_of_one_account(
    sandbox: SandboxFixture, store_url: str
) -> None:
    keys = await seed_tokens(sandbox, store_url, 4)
    sandbox.settings.rate_limit, sandbox.settings.rate_limit_window = 1, 0.3
    sandbox.settings.faults = FaultPlan([Fault("status", share=0.5)], seed=3)
    batch = Batch(account_limit=RateLimit(1, 0.3), retry=FAST_RETRY)
    async with app_engine(batch, sandbox, store_url) as engine:
        report = await batch.refresh(engine).wait()
    assert sum(r.requests for r in report.results.values()) > len(keys), "some account was retried"
    assert sandbox.settings.rate_limits.peak("account") == 1
    assert sandbox.settings.rate_limits.rejected() == 0


async def test_without_the_batch_the_same_retries_break_the_limit(
    sandbox: SandboxFixture, store_url: str
) -> None:
    """The control for the test above: the sandbox does catch a client that retries too fast."""
    keys = await seed_tokens(sandbox, store_url, 4)
    sandbox.settings.rate_limit, sandbox.settings.rate_limit_window = 1, 0.3
    sandbox.settings.faults = FaultPlan([Fault("status", share=0.5)], seed=3)
    async with fe.AsyncEngine(
        "podio-app",
        client=sandbox.client,
        store=store_url,
        endpoints={"token": sandbox.endpoints["token"]},
        retry=FAST_RETRY,
    ) as engine:
        await asyncio.gather(*(engine.refresh(key) for key in keys), return_exceptions=True)
    assert sandbox.settings.rate_limits.peak("account") > 1


async def test_overlapping_runs_refresh_each_token_once(sandbox: SandboxFixture, store_url: str) -> None:
    keys = await seed_tokens(sandbox, store_url, 60)
    first, second = Batch(concurrency=8, retry=FAST_RETRY), Batch(concurrency=8, retry=FAST_RETRY)
    async with app_engine(first, sandbox, store_url) as one, app_engine(second, sandbox, store_url) as two:
        before = await refresh_tokens_of(one, keys)
        reports = await asyncio.gather(first.refresh(one).wait(), second.refresh(two).wait())
    for report in reports:
        assert report.counts == {"refreshed": 60}
    assert successful_refreshes(sandbox, before) == dict.fromkeys(keys, 1)
    sent = [r.requests for report in reports for r in report.results.values()]
    assert sum(sent) == 60, "each token was sent for by exactly one of the two runs"


async def test_a_dead_grant_is_marked_and_reported_not_retried(
    sandbox: SandboxFixture, store_url: str
) -> None:
    keys = await seed_tokens(sandbox, store_url, 3)
    batch = Batch(retry=FAST_RETRY)
    async with app_engine(batch, sandbox, store_url) as engine:
        dead_key = keys[0]
        token = await engine.get_token(dead_key)
        assert token is not None and token.refresh_token
        sandbox.server.state.expire("refresh", now=sandbox.settings.clock(), token_fingerprint=_fp(token))
        report = await batch.refresh(engine).wait()
        stored = await engine.get_token(dead_key)
        again = await batch.refresh(engine).wait()
    assert report.results[dead_key].outcome == "dead"
    assert report.results[dead_key].error == "invalid_grant"
    assert report.results[dead_key].requests == 1
    assert stored is not None and stored.dead
    assert again.results[dead_key].outcome == "skipped", "a dead grant is not tried again"
    assert again.results[dead_key].requests == 0
    assert again.ok is True, "an already dead token needs no attention from cron"
    assert report.ok is False


def _fp(token: fe.Token) -> str:
    from flowengine_sandbox.state import fingerprint

    assert token.refresh_token is not None
    return fingerprint(token.refresh_token)


async def test_expiring_within_selects_only_tokens_close_to_expiry(
    sandbox: SandboxFixture, store_url: str
) -> None:
    keys = await seed_tokens(sandbox, store_url, 4)
    batch = Batch(retry=FAST_RETRY)
    async with app_engine(batch, sandbox, store_url) as engine:
        soon = await engine.get_token(keys[0])
        assert soon is not None and soon.expires_at is not None
        import attrs

        await engine.store.put_token(attrs.evolve(soon, expires_at=soon.obtained_at + 60))
        report = await batch.refresh(engine, expiring_within=3600).wait()
    assert list(report.results) == [keys[0]]
    assert report.counts == {"refreshed": 1}
