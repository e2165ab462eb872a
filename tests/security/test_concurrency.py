"""SECURITY.md 16-18: the same callback many times, two workers on one flow, twenty refreshes at once.

Every store backend runs 16; the cross-process checks (17, 18) run on the durable ones, with
this test process as one worker and ``tests/security/worker.py`` as the other.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import attrs
import flowengine as fe
import httpx
import pytest
from flowengine import _plugins as plugins

from flowengine_httpx import HttpxTransport
from flowengine_sandbox.faults import Fault
from tests.conftest import SandboxFixture
from tests.security.helpers import assert_nothing_sent, token_attempts

ROOT = Path(__file__).resolve().parents[2]


def _engines(store_url: str, sandbox: SandboxFixture, count: int) -> list[fe.AsyncEngine]:
    """``count`` engines on one store, each with its own connection (the memory store: one object)."""
    shared = plugins.open_store(store_url)
    stores = [shared] + [
        shared if store_url.startswith("memory") else plugins.open_store(store_url) for _ in range(count - 1)
    ]
    return [
        fe.AsyncEngine("podio", client=sandbox.client, endpoints=sandbox.endpoints, store=s) for s in stores
    ]


async def _close(engines: list[fe.AsyncEngine]) -> None:
    closed: set[int] = set()
    for engine in engines:
        if id(engine.store) not in closed:
            closed.add(id(engine.store))
            await engine.aclose()


def _outcome(flow: fe.Flow) -> tuple[object, ...]:
    return (flow.id, flow.state, flow.version, flow.token_fingerprint, flow.error)


async def test_sec16_the_same_callback_twice_sends_one_token_request(
    store_url: str, sandbox: SandboxFixture
) -> None:
    engines = _engines(store_url, sandbox, 2)
    try:
        flow = await engines[0].start()
        callback = await sandbox.consent(flow.authorization_url)
        first = await engines[0].callback(callback)
        second = await engines[1].callback(callback)
    finally:
        await _close(engines)
    assert first.state == "exchanged"
    assert _outcome(second) == _outcome(first)
    assert token_attempts(sandbox) == 1


async def test_sec16_a_hundred_deliveries_at_once_on_ten_engines_send_one_token_request(
    store_url: str, sandbox: SandboxFixture
) -> None:
    engines = _engines(store_url, sandbox, 10)
    try:
        flow = await engines[0].start()
        callback = await sandbox.consent(flow.authorization_url)
        outcomes = await asyncio.gather(*(engines[i % 10].callback(callback) for i in range(100)))
    finally:
        await _close(engines)
    assert {_outcome(o) for o in outcomes} == {_outcome(outcomes[0])}
    assert outcomes[0].state == "exchanged"
    assert token_attempts(sandbox) == 1


async def test_sec16_a_hundred_deliveries_of_a_failing_exchange_send_one_request_and_agree(
    store_url: str, sandbox: SandboxFixture
) -> None:
    sandbox.settings.faults.add(Fault("status", status=503))  # every attempt would fail alike
    engines = _engines(store_url, sandbox, 10)
    try:
        flow = await engines[0].start()
        callback = await sandbox.consent(flow.authorization_url)
        outcomes = await asyncio.gather(*(engines[i % 10].callback(callback) for i in range(100)))
    finally:
        await _close(engines)
    assert {_outcome(o) for o in outcomes} == {_outcome(outcomes[0])}
    assert outcomes[0].state == "failed"
    assert outcomes[0].error is not None and outcomes[0].error.code == "provider_unavailable"
    assert token_attempts(sandbox) == 1


async def test_sec16_a_hundred_deliveries_of_a_denial_send_nothing_and_agree(
    store_url: str, sandbox: SandboxFixture
) -> None:
    engines = _engines(store_url, sandbox, 10)
    try:
        flow = await engines[0].start()
        denial = await sandbox.consent(flow.authorization_url, approve=False)
        outcomes = await asyncio.gather(*(engines[i % 10].callback(denial) for i in range(100)))
    finally:
        await _close(engines)
    assert {_outcome(o) for o in outcomes} == {_outcome(outcomes[0])}
    assert outcomes[0].state == "denied"
    assert_nothing_sent(sandbox)


def _worker(store_url: str, sandbox: SandboxFixture, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.security.worker", store_url, sandbox.server.url, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
async def test_sec17_a_flow_started_in_one_process_completes_in_another(
    durable_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=durable_url
    ) as engine:
        started = [await engine.start(session=None) for _ in range(3)]
        callbacks = [await sandbox.consent(f.authorization_url) for f in started]
        other = _worker(durable_url, sandbox, "deliver", *callbacks)
        out, err = await asyncio.to_thread(other.communicate, timeout=60)
        assert other.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == ["exchanged"] * 3
        flows = [await engine.get(f.id) for f in started]
        token = await engine.get_token("podio:user:1001")
    assert [f.state if f else None for f in flows] == ["exchanged"] * 3
    assert token is not None
    assert token_attempts(sandbox) == 3


@pytest.mark.slow
async def test_sec18_twenty_refreshes_across_two_processes_send_one_request(
    durable_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=durable_url
    ) as engine:
        flow = await engine.start()
        token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
        assert token is not None
        sandbox.server.state.expire("access", now=sandbox.settings.clock())
        other = _worker(durable_url, sandbox, "refresh", token.key, "10")
        assert other.stdout is not None and other.stdin is not None
        assert (await asyncio.to_thread(other.stdout.readline)).strip() == "ready"
        # Hold the refresh at the sandbox a moment, so that both processes are asking at once.
        sandbox.settings.faults.add(Fault("latency", delay=0.3, times=1))
        other.stdin.write("go\n")
        other.stdin.flush()
        here = await asyncio.gather(*(engine.refresh(token.key) for _ in range(10)))
        out, err = await asyncio.to_thread(other.communicate, timeout=60)
        assert other.returncode == 0, err
    there = json.loads(out.splitlines()[-1])
    refreshes = [r for r in sandbox.token_requests() if r.grant_type == "refresh_token"]
    assert len(refreshes) == 1
    assert {t.fingerprint for t in here} | set(there) == {here[0].fingerprint}
    assert here[0].fingerprint != token.fingerprint


async def _refresh_behind_the_engines_back(
    sandbox: SandboxFixture, store: fe.Store, stale: fe.Token
) -> fe.Token:
    """Another worker (one that took no lease) refreshes and stores the rotated token."""
    fields = {
        "grant_type": "refresh_token",
        "refresh_token": stale.refresh_token or "",
        "client_id": sandbox.client.client_id,
        "client_secret": sandbox.client.client_secret or "",
    }
    async with httpx.AsyncClient(trust_env=False) as http:
        body = (await http.post(f"{sandbox.server.url}/oauth/token", data=fields)).json()
    rotated = attrs.evolve(
        stale,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        obtained_at=stale.obtained_at + 1,
    )
    await store.put_token(rotated)
    return rotated


class _RotateFirst:
    """A transport that lets another worker rotate the token just before this refresh goes out."""

    def __init__(self, inner: fe.Transport, before: object) -> None:
        self.inner = inner
        self.before = before

    async def send(self, request: fe.HttpRequest) -> fe.HttpResponse:
        if self.before is not None:
            before, self.before = self.before, None
            await before()  # type: ignore[operator]
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_sec18_invalid_grant_after_another_worker_rotated_returns_its_token(
    durable_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    transport = _RotateFirst(HttpxTransport(), None)
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=durable_url, transport=transport
    ) as engine:
        flow = await engine.start()
        stale = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
        assert stale is not None
        rotated: list[fe.Token] = []

        async def other_worker() -> None:
            rotated.append(await _refresh_behind_the_engines_back(sandbox, engine.store, stale))

        transport.before = other_worker
        got = await engine.refresh(stale)
        stored = await engine.get_token(stale.key)
    assert [r.status for r in sandbox.token_requests() if r.grant_type == "refresh_token"] == [200, 400]
    assert got == rotated[0] == stored
    assert not got.dead


async def test_sec18_invalid_grant_with_nothing_newer_marks_the_grant_dead(
    durable_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=durable_url
    ) as engine:
        flow = await engine.start()
        token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
        assert token is not None
        sandbox.server.state.reset()  # the provider forgot the grant (revoked, expired)
        for _ in range(2):
            with pytest.raises(fe.ProviderError) as caught:
                await engine.refresh(token.key)
            assert caught.value.code == "invalid_grant"
        stored = await engine.get_token(token.key)
    assert stored is not None and stored.dead
    assert len(sandbox.token_requests()) == 1  # the second refresh knew: no request
