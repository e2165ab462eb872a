"""What the stores promise the engine, on every backend (issue #3; SECURITY.md 16, 17, 18, 21)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import flowengine as fe
import pytest
from flowengine import _plugins as plugins

from tests.conftest import SandboxFixture
from tests.stores.backends import Backend

# Slow lane: several worker processes per store.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def worker(store_url: str, sandbox: SandboxFixture, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.stores.worker", store_url, sandbox.server.url, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 240) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


def engine_on(store: fe.Store | str, sandbox: SandboxFixture, spec: fe.FlowSpec) -> fe.AsyncEngine:
    return fe.AsyncEngine(spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store)


async def test_sec16_hundred_deliveries_across_ten_engines_send_one_token_request(
    store_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    shared = plugins.open_store(store_url)
    stores = [shared if store_url.startswith("memory") else plugins.open_store(store_url) for _ in range(10)]
    engines = [engine_on(store, sandbox, podio_spec) for store in stores]
    flow = await engines[0].start()
    callback = await sandbox.consent(flow.authorization_url)

    outcomes = await asyncio.gather(*(engines[i % 10].callback(callback) for i in range(100)))

    assert len(sandbox.token_requests()) == 1
    assert {(o.state, o.version, o.token_fingerprint) for o in outcomes} == {
        (outcomes[0].state, outcomes[0].version, outcomes[0].token_fingerprint)
    }
    assert outcomes[0].state == "exchanged"
    for store in {id(s): s for s in stores}.values():
        await store.aclose()


@pytest.mark.slow  # worker processes
async def test_sec17_flow_started_in_one_process_completes_in_another(
    durable_backend: Backend, store_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    urls = tmp_path / "callbacks"
    finish(worker(store_url, sandbox, "start", "3", str(urls)))
    assert sandbox.token_requests() == []

    out = finish(worker(store_url, sandbox, "deliver", str(urls)))

    assert json.loads(out) == {"exchanged": 3}
    async with engine_on(store_url, sandbox, podio_spec) as engine:
        assert len(await engine.flows(state="exchanged")) == 3
        assert len(await engine.tokens()) == 1  # one sandbox user: one token, replaced


@pytest.mark.slow  # worker processes
async def test_four_processes_hammering_a_thousand_flows_exchange_each_once(
    durable_backend: Backend, store_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    sandbox.settings.consent = "approve"
    sandbox.settings.rate_limit = None  # 1,000 exchanges for one user is Podio's whole hourly budget
    urls = tmp_path / "callbacks"
    async with engine_on(store_url, sandbox, podio_spec) as engine:
        limit = asyncio.Semaphore(16)

        async def started() -> str:
            async with limit:
                flow = await engine.start()
                return await sandbox.consent(flow.authorization_url)

        urls.write_text("\n".join(await asyncio.gather(*(started() for _ in range(1000)))))

        workers = [worker(store_url, sandbox, "deliver", str(urls), "25") for _ in range(4)]
        outcomes = [Counter(json.loads(finish(w))) for w in workers]

        failed = {f.id: f.error.message for f in await engine.flows() if f.error}  # to say why
        assert all(o == Counter({"exchanged": 1000}) for o in outcomes), (outcomes, failed)
        requests = sandbox.token_requests()
        assert len(requests) == 1000
        assert len({r.fields["code"] for r in requests}) == 1000
        flows = await engine.flows()
        assert Counter(f.state for f in flows) == Counter({"exchanged": 1000})


@pytest.mark.slow  # worker processes
async def test_sec18_twenty_refreshes_from_two_processes_send_one_request(
    durable_backend: Backend, store_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with engine_on(store_url, sandbox, podio_spec) as engine:
        flow = await engine.start()
        token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
        assert token is not None
    sandbox.server.state.expire("access", now=sandbox.settings.clock())

    first, second = (worker(store_url, sandbox, "refresh", token.key, "10") for _ in range(2))
    for process in (first, second):  # both hold the expired token before either refreshes
        assert process.stdout is not None and process.stdin is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line == "ready\n", process.stderr.read() if process.stderr else line
    for process in (first, second):
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    seen = json.loads(finish(first)) + json.loads(finish(second))

    assert [r.grant_type for r in sandbox.token_requests()].count("refresh_token") == 1
    assert len(set(seen)) == 1
    assert seen[0] != token.fingerprint


@pytest.mark.slow  # worker processes
async def test_sec21_a_worker_killed_mid_exchange_leaves_only_declared_states(
    durable_backend: Backend, store_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    urls = tmp_path / "callbacks"
    finish(worker(store_url, sandbox, "start", "5", str(urls)))
    doomed = worker(store_url, sandbox, "hang", str(urls))
    assert doomed.stdout is not None
    sent = 0
    while sent < 5:  # every exchange reached the sandbox; none of the answers were saved
        line = await asyncio.to_thread(doomed.stdout.readline)
        assert line, doomed.stderr.read() if doomed.stderr else ""
        sent += line.strip() == "sent"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()

    async with engine_on(store_url, sandbox, podio_spec) as engine:
        declared = set(podio_spec.machine.states)
        assert {f.state for f in await engine.flows()} <= declared
        # A new worker finishes them: the codes may be spent, so never a second exchange.
        out = finish(worker(store_url, sandbox, "deliver", str(urls)))
        assert json.loads(out) == {"failed": 5}
        flows = await engine.flows()
    assert {f.state for f in flows} == {"failed"}
    assert {f.error.code for f in flows if f.error} == {"exchange_interrupted"}
    assert len(sandbox.token_requests()) == 5
