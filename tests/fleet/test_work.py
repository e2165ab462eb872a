"""What each task does, run on a worker's runtime in this process (no broker): exactly once from the store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import flowengine as fe
import pytest

from flowengine_celery import FleetSettings
from flowengine_celery._runtime import FleetRuntime
from flowengine_celery._work import Requeue, exchange, grant, refresh
from tests.conftest import SandboxFixture


@pytest.fixture
def runtime(sandbox: SandboxFixture, postgres_url: str, tmp_path: Path) -> Iterator[FleetRuntime]:
    grants = tmp_path / "grants.toml"
    grants.write_text('[podio-app.app-2002]\napp_id = "2002"\napp_token = "sandbox-app-token"\n')
    grants.chmod(0o600)
    env = {
        "FLOWENGINE_STORE": postgres_url,
        "FLOWENGINE_CELERY_SPECS": "podio,podio-app",
        "FLOWENGINE_CELERY_SANDBOX": sandbox.server.url,
        "FLOWENGINE_CELERY_CLIENT_RATE_LIMIT": "100/1s",
        "FLOWENGINE_CELERY_GRANTS": str(grants),
    }
    rt = FleetRuntime(FleetSettings.from_env(env))
    yield rt
    rt.close()


def _refreshes(sandbox: SandboxFixture) -> int:
    return sum(1 for r in sandbox.token_requests() if r.grant_type == "refresh_token")


def test_grant_then_refresh_once_and_a_stale_message_sends_nothing(
    runtime: FleetRuntime, sandbox: SandboxFixture
) -> None:
    granted = runtime.run(grant(runtime, "podio-app", "app", "app-2002"))
    assert (granted.outcome, granted.requests) == ("granted", 1)
    key = "podio-app:app:2002"
    token = runtime.run(_stored(runtime, key))
    first = runtime.run(refresh(runtime, "podio-app", key, token.fingerprint))
    again = runtime.run(refresh(runtime, "podio-app", key, token.fingerprint))  # a duplicated message
    assert (first.outcome, first.requests) == ("refreshed", 1)
    assert (again.outcome, again.requests) == ("fresh", 0)
    assert _refreshes(sandbox) == 1


def test_two_copies_at_once_send_one_request(runtime: FleetRuntime, sandbox: SandboxFixture) -> None:
    runtime.run(grant(runtime, "podio-app", "app", "app-2002"))
    key = "podio-app:app:2002"
    token = runtime.run(_stored(runtime, key))
    other = FleetRuntime(runtime.settings)  # another worker process, as far as the store can tell
    try:

        async def both() -> list[str]:
            one = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                refresh(runtime, "podio-app", key, token.fingerprint), runtime.loop))  # fmt: skip
            two = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                refresh(other, "podio-app", key, token.fingerprint), other.loop))  # fmt: skip
            return sorted(outcome.outcome for outcome in await asyncio.gather(one, two))

        assert asyncio.run(both()) == ["fresh", "refreshed"]
    finally:
        other.close()
    assert _refreshes(sandbox) == 1


def test_a_redelivered_copy_of_a_task_whose_worker_died_mid_request_sends_nothing(
    runtime: FleetRuntime, sandbox: SandboxFixture
) -> None:
    runtime.run(grant(runtime, "podio-app", "app", "app-2002"))
    key = "podio-app:app:2002"
    token = runtime.run(_stored(runtime, key))

    async def die_holding_the_marker() -> None:
        engine = await runtime.engine("podio-app")
        assert await engine.store.acquire(f"sent:{key}:{token.fingerprint}", 60) is not None

    runtime.run(die_holding_the_marker())
    outcome = runtime.run(refresh(runtime, "podio-app", key, token.fingerprint))
    assert (outcome.outcome, outcome.error, outcome.requests) == ("interrupted", "refresh_interrupted", 0)
    assert _refreshes(sandbox) == 0


def test_a_paused_account_sends_the_task_back_to_the_queue(
    runtime: FleetRuntime, sandbox: SandboxFixture
) -> None:
    runtime.run(grant(runtime, "podio-app", "app", "app-2002"))
    key = "podio-app:app:2002"
    token = runtime.run(_stored(runtime, key))
    runtime.run(runtime.limiter.pause(sandbox.client.client_id, 120, account="app:2002"))
    with pytest.raises(Requeue) as caught:
        runtime.run(refresh(runtime, "podio-app", key, token.fingerprint))
    assert not caught.value.counted, "waiting for the limit is not a failure"
    assert 110 < caught.value.countdown <= 120
    assert _refreshes(sandbox) == 0


def test_a_dead_grant_is_reported_once_then_skipped(runtime: FleetRuntime, sandbox: SandboxFixture) -> None:
    from flowengine_sandbox.state import fingerprint

    runtime.run(grant(runtime, "podio-app", "app", "app-2002"))
    key = "podio-app:app:2002"
    token = runtime.run(_stored(runtime, key))
    assert token.refresh_token is not None
    sandbox.server.state.expire(
        "refresh", now=sandbox.settings.clock(), token_fingerprint=fingerprint(token.refresh_token)
    )
    dead = runtime.run(refresh(runtime, "podio-app", key, token.fingerprint))
    after = runtime.run(refresh(runtime, "podio-app", key, token.fingerprint))
    assert (dead.outcome, dead.error, dead.requests) == ("dead", "invalid_grant", 1)
    assert (after.outcome, after.error, after.requests) == ("skipped", "invalid_grant", 0)


def test_exchange_of_an_authorized_flow_once(
    runtime: FleetRuntime, sandbox: SandboxFixture, postgres_url: str
) -> None:
    async def authorized() -> str:
        async with fe.AsyncEngine("podio", client=sandbox.client, endpoints=sandbox.endpoints,
                                  store=postgres_url, auto_exchange=False) as web:  # fmt: skip
            flow = await web.start()
            flow = await web.callback(await sandbox.consent(flow.authorization_url))
            assert flow.state == "authorized"
            return flow.id

    flow_id = asyncio.run(authorized())
    first = runtime.run(exchange(runtime, "podio", flow_id))
    again = runtime.run(exchange(runtime, "podio", flow_id))
    unknown = runtime.run(exchange(runtime, "podio", "no-such-flow"))
    assert (first.outcome, first.requests) == ("exchanged", 1)
    assert (again.outcome, again.requests) == ("exchanged", 0), "a replayed message returns the outcome"
    assert (unknown.outcome, unknown.error) == ("failed", "flow_unknown")
    assert sum(1 for r in sandbox.token_requests() if r.grant_type == "authorization_code") == 1


@pytest.mark.parametrize(
    "arguments",
    [
        ("podio-password", "k", "f"),
        ("podio-app", 5, "f"),
        ("podio-app", "", "f"),
        ("podio-app", "k" * 600, "f"),
    ],
)
def test_a_message_that_is_not_names_of_this_fleet_is_refused(
    runtime: FleetRuntime, sandbox: SandboxFixture, arguments: tuple[object, object, object]
) -> None:
    outcome = runtime.run(refresh(runtime, *arguments))
    assert (outcome.outcome, outcome.error, outcome.requests) == ("failed", "input_invalid", 0)
    assert sandbox.token_requests() == []


def test_grant_inputs_come_from_the_workers_file_only(runtime: FleetRuntime, sandbox: SandboxFixture) -> None:
    missing = runtime.run(grant(runtime, "podio-app", "app", "app-9999"))
    assert (missing.outcome, missing.error, missing.requests) == ("failed", "credentials_missing", 0)
    assert sandbox.token_requests() == []


async def _stored(runtime: FleetRuntime, key: str) -> fe.Token:
    engine = await runtime.engine("podio-app")
    token = await engine.get_token(key)
    assert token is not None
    return token
