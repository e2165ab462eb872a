"""SECURITY.md 21: a worker killed (SIGKILL) at any step boundary, or at any moment, leaves every flow
in a declared state, nothing half-written, and no code sent twice; the restart finishes what it can.

Runs on every durable store (SQLite, Redis, PostgreSQL). The worker is ``tests/security/worker.py``;
the boundaries are ``crash_points.POINTS``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import flowengine as fe
import pytest

from tests.conftest import SandboxFixture
from tests.security.crash_points import POINTS

# Slow lane: workers killed with SIGKILL on every durable store.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

#: Where each flow stands right after the kill, and how the restart finishes it.
AFTER_KILL = {
    "started": ("redirected", "redirected"),  # never consented: it waits for its callback
    "authorized": ("authorized", "exchanged"),  # the code was never sent: the restart sends it
    "leased": ("authorized", "exchanged"),  # the dead worker's lease expires first
    "marked": ("exchanging", "failed"),  # may have been sent: never again (exchange_interrupted)
    "sent": ("exchanging", "failed"),  # was sent: never again
    "token_saved": ("exchanging", "failed"),  # the token is kept, the code is not re-sent
    "exchanged": ("exchanged", "exchanged"),
}


def _worker(store_url: str, sandbox: SandboxFixture, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.security.worker", store_url, sandbox.server.url, *args],
        cwd=ROOT,
        env={**os.environ, "WORKER_LEASE_TTL": "0.5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
    assert line, process.stderr.read() if process.stderr else "the worker ended"
    return line.strip()


def _kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _assert_each_code_sent_once(sandbox: SandboxFixture) -> None:
    sent = Counter(
        r.fields.get("code") for r in sandbox.token_requests() if r.grant_type == "authorization_code"
    )
    assert not sent or max(sent.values()) == 1, sent


async def test_sec21_a_worker_killed_at_each_step_boundary_leaves_declared_states(
    durable_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    callbacks = tmp_path / "callbacks"
    worker = _worker(durable_url, sandbox, "crash", str(callbacks))
    frozen: dict[str, str] = {}
    try:
        while len(frozen) < len(POINTS):
            _, point, flow_id = (await _line(worker)).split()
            frozen[point] = flow_id
    finally:
        _kill(worker)

    declared = set(podio_spec.machine.states)
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=durable_url
    ) as engine:
        flows = {f.id: f for f in await engine.flows()}  # every record reads back whole
        assert set(flows) == set(frozen.values())
        assert {f.state for f in flows.values()} <= declared
        for point, flow_id in frozen.items():
            assert flows[flow_id].state == AFTER_KILL[point][0], point
        assert await engine.get_token("podio:user:1001") is not None  # saved at token_saved

        outcomes = await asyncio.gather(*(engine.callback(url) for url in callbacks.read_text().split()))
        finished = {flow.id: flow for flow in outcomes}
        for point, flow_id in frozen.items():
            flow = finished.get(flow_id) or await engine.get(flow_id)
            assert flow is not None
            assert flow.state == AFTER_KILL[point][1], point
            if flow.state == "failed":
                assert flow.error is not None and flow.error.code == "exchange_interrupted"
        assert {f.state for f in await engine.flows()} <= declared
    _assert_each_code_sent_once(sandbox)


async def test_sec21_a_worker_killed_at_a_random_moment_leaves_declared_states(
    durable_url: str, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    sandbox.settings.consent = "approve"
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=durable_url
    ) as engine:
        started = await asyncio.gather(*(engine.start() for _ in range(20)))
        urls = list(await asyncio.gather(*(sandbox.consent(f.authorization_url) for f in started)))
        worker = _worker(durable_url, sandbox, "deliver", *urls)
        assert await _line(worker) == "delivering"
        await asyncio.sleep(random.Random(os.getpid()).uniform(0.005, 0.05))
        _kill(worker)

        declared = set(podio_spec.machine.states)
        assert {f.state for f in await engine.flows()} <= declared  # all 20 read back whole
        await asyncio.gather(*(engine.callback(url) for url in urls))
        flows = await engine.flows()
    assert len(flows) == 20
    assert {f.state for f in flows} <= {"exchanged", "failed"}
    assert {f.error.code for f in flows if f.error} <= {"exchange_interrupted"}
    _assert_each_code_sent_once(sandbox)
