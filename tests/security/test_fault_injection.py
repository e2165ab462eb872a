"""The sandbox's fault injection, which SECURITY.md 19 rests on: it fails exactly as it is told.

Through its two surfaces: ``SandboxSettings.faults`` in-process, ``/_sandbox/faults`` over HTTP.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

import httpx
import pytest

from flowengine_sandbox.faults import Fault, FaultPlan
from flowengine_sandbox.settings import SandboxSettings
from tests.conftest import SandboxFixture
from tests.support.tls import tls

PASSWORD_GRANT = {
    "grant_type": "password",
    "username": "user@example.com",
    "password": "sandbox-password",
    "client_id": "sandbox-client",
    "client_secret": "sandbox-secret",
}


@pytest.fixture
async def http(sandbox: SandboxFixture) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=sandbox.server.url, trust_env=False, timeout=5, verify=tls()
    ) as client:
        yield client


async def _statuses(http: httpx.AsyncClient, count: int) -> list[int]:
    return [(await http.post("/oauth/token", data=PASSWORD_GRANT)).status_code for _ in range(count)]


async def test_sec19_faults_apply_to_the_next_n_requests_then_stop(
    sandbox: SandboxFixture, http: httpx.AsyncClient
) -> None:
    sandbox.settings.faults.add(Fault("status", status=502, times=2), Fault("rate_limit", times=1))
    assert await _statuses(http, 5) == [502, 502, 420, 200, 200]
    assert [f.kind for f in sandbox.settings.faults.injected()] == ["status", "status", "rate_limit"]
    assert len(sandbox.token_requests()) == 2  # `before`: the endpoint never saw the faulted ones


async def test_sec19_a_share_is_drawn_from_a_seeded_rng_and_reproducible(
    sandbox: SandboxFixture, http: httpx.AsyncClient
) -> None:
    runs = []
    for _ in range(2):
        sandbox.settings.faults = FaultPlan([Fault("status", status=503, share=0.5)], seed=42)
        runs.append(await _statuses(http, 16))
    assert runs[0] == runs[1]
    assert {503, 200} == set(runs[0])


async def test_sec19_the_rate_limit_fault_speaks_podio(
    sandbox: SandboxFixture, http: httpx.AsyncClient
) -> None:
    sandbox.settings.faults.add(Fault("rate_limit", retry_after=12, times=1))
    answer = await http.post("/oauth/token/v2", json={"grant_type": "password"})
    assert answer.status_code == 420
    assert answer.headers["retry-after"] == "12"
    assert answer.headers["x-rate-limit-limit"] == "1000"
    assert answer.headers["x-rate-limit-remaining"] == "0"
    assert answer.json()["error"] == "rate_limit"
    assert set(answer.json()) >= {"error", "error_description", "error_detail", "request"}


async def test_sec19_after_stage_faults_let_the_endpoint_spend_the_request(
    sandbox: SandboxFixture, http: httpx.AsyncClient
) -> None:
    sandbox.settings.faults.add(Fault("reset", times=1))
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/oauth/token", data=PASSWORD_GRANT)
    [spent] = sandbox.token_requests()
    assert spent.status == 200  # the token was issued; its answer was lost
    assert [f.stage for f in sandbox.settings.faults.injected()] == ["after"]


async def test_sec19_a_read_timeout_answers_nothing_and_an_endless_body_never_ends(
    sandbox: SandboxFixture, http: httpx.AsyncClient
) -> None:
    sandbox.settings.faults.add(Fault("read_timeout", delay=10, times=1), Fault("endless", times=1))
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/oauth/token", data=PASSWORD_GRANT, timeout=0.3)
    received = 0
    async with http.stream("POST", "/oauth/token", data=PASSWORD_GRANT) as answer:
        async for chunk in answer.aiter_raw():
            received += len(chunk)
            if received > 4 << 20:
                break
    assert received > 4 << 20


async def test_sec19_faults_are_set_and_read_over_http(
    sandbox: SandboxFixture, http: httpx.AsyncClient
) -> None:
    plan = {"faults": [{"kind": "html", "status": 502, "times": 1, "paths": ["/oauth/token"]}], "seed": 3}
    shown = (await http.post("/_sandbox/faults", json=plan)).json()
    assert shown["seed"] == 3 and shown["faults"][0]["kind"] == "html" and shown["faults"][0]["left"] == 1
    page = await http.post("/oauth/token", data=PASSWORD_GRANT)
    assert page.status_code == 502 and page.headers["content-type"].startswith("text/html")
    record = (await http.get("/_sandbox/faults")).json()
    assert [(f["kind"], f["path"]) for f in record["injected"]] == [("html", "/oauth/token")]
    assert record["faults"][0]["left"] == 0
    cleared = (await http.post("/_sandbox/faults", json={})).json()
    assert cleared["faults"] == [] and cleared["injected"] == []


@pytest.mark.parametrize(
    "plan",
    [
        {"faults": [{"kind": "explode"}]},
        {"faults": [{"kind": "status", "status": 99}]},
        {"faults": [{"kind": "status", "share": 1.5}]},
        {"faults": [{"kind": "status", "times": -1}]},
        {"faults": [{"kind": "latency", "delay": "soon"}]},
        {"faults": [{"kind": "status", "paths": ["/_sandbox/faults"]}]},
        {"faults": [{"kind": "status", "colour": "red"}]},
        {"faults": [{"status": 503}]},
        {"faults": {"kind": "status"}},
        {"seed": "x"},
        {"plan": []},
    ],
)
async def test_sec19_a_malformed_plan_is_refused_and_changes_nothing(
    sandbox: SandboxFixture, http: httpx.AsyncClient, plan: dict[str, object]
) -> None:
    sandbox.settings.faults.add(Fault("status", status=500, times=1))
    answer = await http.post("/_sandbox/faults", json=plan)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert [f.kind for f in sandbox.settings.faults.faults] == ["status"]


async def test_sec19_the_admin_routes_never_fail(sandbox: SandboxFixture, http: httpx.AsyncClient) -> None:
    sandbox.settings.faults.add(Fault("status", status=500, paths=("/",)))
    assert (await http.get("/_sandbox/faults")).status_code == 200
    assert (await http.get("/_sandbox/token-requests")).status_code == 200
    assert (await http.get("/user/status")).status_code == 500


def test_sec19_a_copy_of_the_settings_starts_a_fresh_plan() -> None:
    """How the fixtures reset the sandbox between tests: a deep copy, with full counts and no record."""
    settings = SandboxSettings(faults=FaultPlan([Fault("status", times=1)], seed=9))
    assert settings.faults.pick("POST", "/oauth/token") is not None
    fresh = copy.deepcopy(settings)
    assert fresh.faults.injected() == []
    assert fresh.faults.seed == 9 and fresh.faults.pick("POST", "/oauth/token") is not None
    with pytest.raises(TypeError):
        settings.faults = "none"  # type: ignore[assignment]
