"""The sandbox's emulation of Podio's rate limits (ratelimit.py), over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from flowengine_sandbox.app import create_app
from flowengine_sandbox.faults import Fault, FaultPlan
from flowengine_sandbox.settings import SandboxApp, SandboxSettings

CLIENT = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(clock: Clock) -> SandboxSettings:
    apps = {2002: SandboxApp(2002, "a"), 2003: SandboxApp(2003, "b")}
    return SandboxSettings(clock=clock, apps=apps, rate_limit=2, rate_limit_window=60)


@pytest.fixture
async def podio(settings: SandboxSettings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


async def app_grant(podio: httpx.AsyncClient, app_id: int = 2002) -> httpx.Response:
    token = {2002: "a", 2003: "b"}[app_id]
    return await podio.post(
        "/oauth/token/v2", json={"grant_type": "app", "app_id": str(app_id), "app_token": token, **CLIENT}
    )


async def test_headers_count_down_then_420_until_the_window_ends(
    podio: httpx.AsyncClient, clock: Clock
) -> None:
    answers = [await app_grant(podio) for _ in range(3)]
    assert [(r.status_code, r.headers["x-rate-limit-remaining"]) for r in answers] == [
        (200, "1"),
        (200, "0"),
        (420, "0"),
    ]
    assert answers[0].headers["x-rate-limit-limit"] == "2"
    refused = answers[2].json()
    assert refused["error"] == "rate_limit" and "Please wait" in refused["error_description"]
    assert "retry-after" not in answers[2].headers, "Podio sends no reset header"
    assert (await app_grant(podio, 2003)).status_code == 200, "another app has its own budget"
    clock.now += 60
    assert (await app_grant(podio)).status_code == 200, "a new window"


async def test_refresh_counts_against_the_account_of_its_token(podio: httpx.AsyncClient) -> None:
    refresh_token = (await app_grant(podio)).json()["refresh_token"]
    refreshed = await podio.post(
        "/oauth/token/v2", json={"grant_type": "refresh_token", "refresh_token": refresh_token, **CLIENT}
    )
    assert refreshed.headers["x-rate-limit-remaining"] == "0", "the refresh spent app 2002's second call"
    access = refreshed.json()["access_token"]
    status = await podio.get("/user/status", headers={"Authorization": f"OAuth2 {access}"})
    assert status.status_code == 420, "API calls count too"


async def test_client_limit_and_counters(podio: httpx.AsyncClient, settings: SandboxSettings) -> None:
    changed = await podio.post("/_sandbox/settings", json={"client_rate_limit": 3, "rate_limit": None})
    assert changed.json()["client_rate_limit"] == 3 and changed.json()["rate_limit"] is None
    statuses = [(await app_grant(podio, app)).status_code for app in (2002, 2003, 2002, 2003)]
    assert statuses == [200, 200, 200, 420]
    counters = (await podio.get("/_sandbox/counters")).json()
    assert counters["peak"] == {"account": 0, "client": 4}
    assert counters["rejected"] == 1
    [bucket] = counters["buckets"]
    assert (bucket["scope"], bucket["calls"], bucket["rejected"], bucket["limit"]) == ("client", 3, 1, 3)
    assert (await podio.post("/_sandbox/reset")).status_code == 204
    assert (await podio.get("/_sandbox/counters")).json()["buckets"] == []


async def test_bad_limits_are_refused(podio: httpx.AsyncClient) -> None:
    for change in ({"rate_limit": 0}, {"rate_limit_window": 0}, {"client_rate_limit": True}):
        assert (await podio.post("/_sandbox/settings", json=change)).status_code == 400


async def test_faulted_calls_count_and_keep_their_own_headers(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    settings.faults = FaultPlan([Fault("rate_limit", times=1, headers={"X-Rate-Limit-Remaining": "7"})])
    faulted = await app_grant(podio)
    assert faulted.status_code == 420 and faulted.headers.get_list("x-rate-limit-remaining") == ["7"]
    assert (await app_grant(podio)).headers["x-rate-limit-remaining"] == "0", "the faulted call counted"


async def test_unknown_clients_are_not_counted(podio: httpx.AsyncClient, settings: SandboxSettings) -> None:
    body = {
        "grant_type": "app",
        "app_id": "2002",
        "app_token": "a",
        "client_id": "nobody",
        "client_secret": "x",
    }
    for _ in range(3):
        assert (await podio.post("/oauth/token/v2", json=body)).status_code == 400
    assert settings.rate_limits.snapshot() == []


def test_a_deep_copy_is_a_fresh_ledger(settings: SandboxSettings) -> None:
    import copy

    settings.rate_limits.admit("c", "app:1", now=0, window=1, limit=1, client_limit=None)
    assert copy.deepcopy(settings.rate_limits).snapshot() == []
