"""The issue's proof: 2,000 tokens, two Celery workers, one killed with SIGKILL mid-run.

Against the sandbox in a process of its own (its rate limits on: 1 call per
account and 50 per API key in any half second), a PostgreSQL store, and each
broker in turn (RabbitMQ, then Redis). Every token must be refreshed exactly
once (the sandbox's request record, per token), the sandbox's windows never
exceeded (its peaks per window) and nothing lost (every stored token new).

The kill is made when no request is on the wire: the test pauses the fleet's
shared limiter (an operator's brake), waits until every answer the sandbox gave
is in the store and no permit is out, then kills. The worker dies holding
messages it received and did not acknowledge (due later, or waiting for the
limiter), which the broker hands to the other worker. A kill *during* a request
is the case no client can make exactly once (the answer dies with the worker;
docs/deploy.md): test_a_worker_killed_mid_request_loses_an_answer_not_a_second_request.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import flowengine as fe
import pytest

from flowengine_celery import FleetSettings, SharedLimiter, create_app, open_backend
from tests.fleet.fleet import changed_tokens, refreshes_by_token, seed_tokens, worker_env
from tests.fleet.services import (
    FLOWENGINE,
    Process,
    SandboxAdmin,
    rabbitmq_broker,
    redis_broker,
    sandbox_process,
    start_worker,
    wait_until,
)

TOKENS = 2000
WINDOW = 0.5
ACCOUNT_LIMIT, CLIENT_LIMIT = 1, 50
CLIENT = "sandbox-client"


def _broker(kind: str) -> contextlib.AbstractContextManager[tuple[str, dict[str, str]]]:
    return rabbitmq_broker() if kind == "rabbitmq" else redis_broker(visibility_timeout="30s")


async def _sandbox_calls(admin: SandboxAdmin) -> int:
    counters = await admin.get("/_sandbox/counters")
    assert isinstance(counters, dict)
    return sum(b["total"] for b in counters["buckets"] if b["scope"] == "client")


def _enqueue(env: dict[str, str], store: str) -> str:
    done = subprocess.run(
        [*FLOWENGINE, "batch", "refresh", "--all", "--via", "celery", "--store", store,
         "--rate-limit", f"{ACCOUNT_LIMIT}/{WINDOW}s", "--client-rate-limit", f"{CLIENT_LIMIT}/{WINDOW}s"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr.strip()


@contextlib.contextmanager
def _workers(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Process, Process]]:
    first = start_worker("w1", env, tmp_path)
    try:
        second = start_worker("w2", env, tmp_path)
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


def _count(worker: Process, text: str) -> int:
    return len(worker.lines(text))


@attrs.define
class Run:
    """What one fleet run did, as the sandbox, the store and the workers' logs tell it."""

    seeded: dict[str, str]
    at_kill: int = 0
    by_victim: int = 0
    by_survivor: int = 0
    redelivered: int = 0
    took: float = 0.0
    changed: set[str] = attrs.Factory(set)
    dead: set[str] = attrs.Factory(set)
    per_token: dict[str, int] = attrs.Factory(dict)
    statuses: dict[int, int] = attrs.Factory(dict)
    counters: dict[str, Any] = attrs.Factory(dict)


async def _kill_with_nothing_on_the_wire(run: Run, admin: SandboxAdmin, limiter: SharedLimiter, store: str,
                                         victim: Process) -> None:  # fmt: skip
    """Pause the fleet, wait until every answer is stored and no permit is out, then SIGKILL."""
    await limiter.pause(CLIENT, 5)  # no new request starts, fleet-wide
    paused = time.monotonic()

    async def nothing_on_the_wire() -> bool:
        if await limiter.in_flight(CLIENT):
            return False
        changed, _ = await changed_tokens(store, run.seeded)
        return len(changed) == await _sandbox_calls(admin)  # every answer is stored

    await wait_until(nothing_on_the_wire, "every answer stored, no permit out", within=3)
    run.at_kill = len((await changed_tokens(store, run.seeded))[0])
    run.by_victim = _count(victim, ": refreshed")
    victim.kill()
    assert time.monotonic() - paused < 5, "the kill came while the fleet was paused"


async def _run_fleet(run: Run, admin: SandboxAdmin, env: dict[str, str], store: str, tmp_path: Path) -> None:
    """Two workers, the refreshes queued, one worker killed a third of the way; until every token is new."""
    limiter = SharedLimiter(open_backend(store), fe.RateLimit(ACCOUNT_LIMIT, WINDOW),
                            fe.RateLimit(CLIENT_LIMIT, WINDOW))  # fmt: skip
    try:
        with _workers(env, tmp_path) as (victim, survivor):
            ready = time.monotonic()
            said = _enqueue(env, store)
            assert f"{TOKENS} token(s) queued via celery, 0 already queued" in said

            async def calls_at_least(count: int) -> bool:
                return await _sandbox_calls(admin) >= count

            async def all_stored() -> bool:
                return len((await changed_tokens(store, run.seeded))[0]) >= TOKENS

            await wait_until(
                lambda: calls_at_least(TOKENS // 3), "a third of the refreshes", within=60, every=0.5
            )
            await _kill_with_nothing_on_the_wire(run, admin, limiter, store, victim)
            await wait_until(
                lambda: calls_at_least(TOKENS), "a request for every token", within=75, every=0.5
            )
            await wait_until(all_stored, "every new token stored", within=10, every=0.5)
            run.took = time.monotonic() - ready
    finally:
        await limiter.aclose()
    run.redelivered = _count(survivor, "(redelivered)")
    run.by_survivor = _count(survivor, ": refreshed")


@pytest.mark.slow
@pytest.mark.parametrize("broker_kind", ["rabbitmq", "redis"])
async def test_2000_tokens_two_workers_one_killed_each_refreshed_once_within_the_limits(
    broker_kind: str, postgres_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    with sandbox_process(tmp_path) as sandbox, _broker(broker_kind) as (broker, broker_env):
        admin = SandboxAdmin(sandbox)
        try:
            await admin.post("/_sandbox/settings", {"rate_limit": None, "client_rate_limit": None})
            run = Run(await seed_tokens(admin, postgres_url, TOKENS))
            limited = {
                "rate_limit": ACCOUNT_LIMIT,
                "client_rate_limit": CLIENT_LIMIT,
                "rate_limit_window": WINDOW,
            }
            await admin.post("/_sandbox/settings", limited)
            limits = {"FLOWENGINE_CELERY_RATE_LIMIT": f"{ACCOUNT_LIMIT}/{WINDOW}s",
                      "FLOWENGINE_CELERY_CLIENT_RATE_LIMIT": f"{CLIENT_LIMIT}/{WINDOW}s"}  # fmt: skip
            env = worker_env(postgres_url, broker, sandbox, tmp_path, **broker_env, **limits)
            await _run_fleet(run, admin, env, postgres_url, tmp_path)
            run.changed, run.dead = await changed_tokens(postgres_url, run.seeded)
            per_token, statuses = await refreshes_by_token(admin, run.seeded)
            run.per_token, run.statuses = dict(per_token), dict(statuses)
            counters = await admin.get("/_sandbox/counters")
            assert isinstance(counters, dict)
            run.counters = counters
        finally:
            await admin.aclose()
    _report(broker_kind, run, time.monotonic() - started)
    # Exactly once: one refresh request per token at the sandbox, each answered 200, none rotated.
    assert run.per_token == dict.fromkeys(run.seeded, 1)
    assert run.statuses == {200: TOKENS}
    # Nothing lost: every stored token is the new one, none dead; the survivor finished the victim's share.
    assert run.changed == set(run.seeded)
    assert run.dead == set()
    assert run.by_victim + run.by_survivor == TOKENS
    assert 0 < run.by_victim < run.at_kill <= TOKENS - 1
    # The sandbox's windows never exceeded, and never a 420 of its own.
    peak = run.counters["peak"]
    assert peak["account"] <= ACCOUNT_LIMIT
    assert peak["client"] <= CLIENT_LIMIT
    assert run.counters["rejected"] == 0
    assert peak["client"] >= CLIENT_LIMIT * 0.6, "the client limit was reached, so it was tested"


def _report(broker_kind: str, run: Run, test_took: float) -> None:
    """The figures docs/deploy.md quotes (``pytest -s`` shows them)."""
    peak = run.counters["peak"]
    parts = [
        f"{TOKENS} tokens, 2 workers x 8 threads",
        f"victim killed after {run.at_kill} refreshed (by it: {run.by_victim})",
        f"survivor refreshed {run.by_survivor}, {run.redelivered} task(s) redelivered to it",
        f"refresh requests per token: {sorted(set(run.per_token.values()))}, statuses {run.statuses}",
        f"peak per {WINDOW}s window: account {peak['account']}, client {peak['client']} "
        f"(limits {ACCOUNT_LIMIT}, {CLIENT_LIMIT}), refused {run.counters['rejected']}",
        f"refreshes took {run.took:.1f}s, the test {test_took:.1f}s",
    ]
    print(f"\n[{broker_kind}] " + "; ".join(parts))


@pytest.mark.slow
async def test_a_worker_killed_mid_request_loses_an_answer_not_a_second_request(
    postgres_url: str, tmp_path: Path
) -> None:
    """The one case no client can make exactly once, made at most once: the answer dies with the worker."""
    with sandbox_process(tmp_path) as sandbox, rabbitmq_broker() as (broker, broker_env):
        admin = SandboxAdmin(sandbox)
        try:
            seeded = await seed_tokens(admin, postgres_url, 1)
            [key] = seeded
            store = fe.open_store(postgres_url)
            before = await store.get_token(key)
            assert before is not None
            env = worker_env(
                postgres_url, broker, sandbox, tmp_path, **broker_env, FLOWENGINE_CELERY_LEASE_TTL="3s"
            )
            # The sandbox refreshes (and rotates), then holds the answer back: the worker dies waiting for it.
            await admin.post(
                "/_sandbox/faults", {"faults": [{"kind": "latency", "stage": "after", "delay": 30}]}
            )
            first = start_worker("w1", env, tmp_path, concurrency=1)
            try:
                app = create_app(FleetSettings.from_env(env))
                app.send_task("flowengine.refresh", args=["podio-app", key, before.fingerprint],
                              queue=env["FLOWENGINE_CELERY_QUEUE"])  # fmt: skip
                app.close()

                async def refreshed_at_the_sandbox() -> bool:
                    return sum((await refreshes_by_token(admin, seeded))[0].values()) == 1

                await wait_until(refreshed_at_the_sandbox, "the refresh reached the sandbox", within=30)
            finally:
                first.kill()
            await admin.post("/_sandbox/faults", {"faults": []})
            second = start_worker("w2", env, tmp_path, concurrency=1)
            try:
                line = second.wait_for(f"{key}: ", timeout=30)
            finally:
                second.stop()
            after = await store.get_token(key)
            await store.aclose()
            per_token, statuses = await refreshes_by_token(admin, seeded)
        finally:
            await admin.aclose()
    assert "interrupted (refresh_interrupted) (redelivered)" in line, line
    assert per_token == {key: 1}, "the redelivered task sent no second request"
    assert statuses == {200: 1}, "the sandbox did refresh: the answer is what was lost"
    assert after is not None
    assert after.fingerprint == before.fingerprint, "the stored token is the old one"
    assert not after.dead, "not marked dead: nothing said it was"
