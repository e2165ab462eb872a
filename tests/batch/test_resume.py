"""Resumable runs: stopped halfway (stop(), Ctrl-C, SIGTERM, even SIGKILL), rerun, same final report."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from flowengine_batch import Batch, ItemResult, Journal
from flowengine_sandbox.faults import Fault, FaultPlan
from flowengine_sandbox.state import fingerprint
from tests.batch.conftest import FAST_RETRY, app_engine, refresh_tokens_of, seed_tokens, successful_refreshes
from tests.conftest import SandboxFixture

# Slow lane: kills and reruns batch processes.
pytestmark = pytest.mark.slow

TOKENS = 60


async def _scenario(sandbox: SandboxFixture, store: str) -> list[str]:
    """Tokens with every kind of outcome: fine, dying now, already dead, not refreshable."""
    keys = await seed_tokens(sandbox, store, TOKENS)
    batch = Batch(account_limit=None)
    async with app_engine(batch, sandbox, store) as engine:
        dying = await engine.get_token(keys[1])
        assert dying is not None and dying.refresh_token
        sandbox.server.state.expire(
            "refresh", now=sandbox.settings.clock(), token_fingerprint=fingerprint(dying.refresh_token)
        )
        dead = await engine.get_token(keys[2])
        plain = await engine.get_token(keys[3])
        assert dead is not None and plain is not None
        await engine.store.put_token(attrs.evolve(dead, dead=True))
        await engine.store.put_token(attrs.evolve(plain, refresh_token=None))
    sandbox.settings.faults = FaultPlan([Fault("status", share=0.1)], seed=11)
    return keys


def _comparable(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(i["item"], i["outcome"], i["error"], i["token_key"]) for i in items]


async def test_stopped_halfway_then_rerun_reports_what_an_uninterrupted_run_does(
    sandbox: SandboxFixture, tmp_path: Path
) -> None:
    whole_store = f"sqlite:///{tmp_path / 'whole.db'}"
    await _scenario(sandbox, whole_store)
    batch = Batch(concurrency=4, retry=FAST_RETRY)
    async with app_engine(batch, sandbox, whole_store) as engine:
        whole = (await batch.refresh(engine).wait()).to_json()
    assert whole["complete"] and whole["counts"]["refreshed"] == TOKENS - 3

    sandbox.server.state.reset()
    store = f"sqlite:///{tmp_path / 'halves.db'}"
    keys = await _scenario(sandbox, store)
    state = tmp_path / "refresh.state"
    batch = Batch(concurrency=4, retry=FAST_RETRY)
    async with app_engine(batch, sandbox, store) as engine:
        before = await refresh_tokens_of(engine, [k for k in keys if k not in keys[2:4]])
        run = batch.refresh(engine, journal=Journal(state))
        seen: list[ItemResult] = []
        async for result in run:
            seen.append(result)
            if len(seen) == TOKENS // 2:
                run.stop()
        first = run.report.to_json()
        assert not first["complete"] and first["stopped"]
        assert first["pending"] == TOKENS - len([r for r in seen if r.done])
        assert state.exists(), "the state file is kept for the rerun"

        rerun = batch.refresh(engine, journal=Journal(state))
        second = (await rerun.wait()).to_json()
    assert second["complete"]
    assert second["resumed"] == len([r for r in seen if r.done])
    assert _comparable(second["items"]) == _comparable(whole["items"])
    assert second["counts"] == whole["counts"]
    assert not state.exists(), "a completed run removes its state file"
    refreshed = successful_refreshes(sandbox, before)
    assert "<rotated>" not in refreshed and max(refreshed.values()) == 1


async def test_a_state_file_of_another_job_is_refused(
    sandbox: SandboxFixture, store_url: str, tmp_path: Path
) -> None:
    await seed_tokens(sandbox, store_url, 2)
    state = tmp_path / "job.state"
    batch = Batch()
    async with app_engine(batch, sandbox, store_url) as engine:
        run = batch.refresh(engine, journal=Journal(state))
        run.stop()  # plans, writes its header, settles nothing
        await run.wait()
        assert state.exists()
        from flowengine import ConfigError

        with pytest.raises(ConfigError) as caught:
            await batch.refresh(engine, journal=Journal(state), expiring_within=60).wait()
    assert caught.value.code == "state_mismatch"


def _command(store: str, state: Path, report: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from flowengine.cli import main; main()",
        "batch",
        "refresh",
        "--all",
        "--sandbox",
        "--store",
        store,
        "--state",
        str(state),
        "--report",
        str(report),
        "--progress",
        "lines",
        "--client-rate-limit",
        "10/0.2s",  # slow enough to be stopped halfway
        *extra,
    ]


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["sigint", "sigterm", "sigkill"]
)
async def test_cli_killed_halfway_then_rerun_loses_nothing_and_refreshes_none_twice(
    sandbox: SandboxFixture, store_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    keys = await seed_tokens(sandbox, store_url, TOKENS)
    batch = Batch(account_limit=None)
    async with app_engine(batch, sandbox, store_url) as engine:
        before = await refresh_tokens_of(engine, keys)
    state, report = tmp_path / "state.jsonl", tmp_path / "report.json"
    env = {**os.environ, "FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    child = subprocess.Popen(  # noqa: ASYNC220 - the test reads its progress lines as they come
        _command(store_url, state, report),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert child.stderr is not None
    settled = 0
    for line in child.stderr:
        if line.startswith("refreshed "):
            settled += 1
            if settled == TOKENS // 3:
                child.send_signal(signum)
                break
    rest = child.stderr.read()
    code = child.wait(timeout=30)
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert not report.exists()
    else:
        assert code == 128 + signum, rest
        assert "rerun the same command" in rest
        first = json.loads(report.read_text())
        assert not first["complete"] and first["stopped"]
        assert first["counts"].get("interrupted", 0) + first["counts"]["refreshed"] < TOKENS
    assert state.exists()

    done = subprocess.run(  # noqa: ASYNC221 - the rerun under test; the sandbox serves from its own thread
        _command(store_url, state, report, "--quiet"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    final = json.loads(report.read_text())
    lost = [item for item in final["items"] if item["outcome"] != "refreshed"]
    if signum != signal.SIGKILL or not lost:
        assert done.returncode == 0, (done.stderr, final["counts"])
        assert done.stderr == "", "--quiet prints nothing when all is well"
        assert final["counts"] == {"refreshed": TOKENS}
    else:
        # Killed after the provider rotated a refresh token and before its answer was
        # saved (docs/batch.md): that grant is gone with the process, and nothing else.
        assert done.returncode == 4 and len(lost) <= 32, (done.stderr, final["counts"])
        assert {(i["outcome"], i["error"]) for i in lost} == {("dead", "invalid_grant")}
        for item in lost:  # --quiet names each item that needs attention
            assert f"dead {item['item']} invalid_grant" in done.stderr
        assert final["counts"] == {"refreshed": TOKENS - len(lost), "dead": len(lost)}
    assert final["complete"] and final["resumed"] >= TOKENS // 3
    assert [item["item"] for item in final["items"]] == keys
    refreshed = successful_refreshes(sandbox, before)
    assert refreshed == dict.fromkeys(keys, 1), "every token refreshed exactly once over both runs"
    assert not state.exists()


async def test_cli_killed_with_a_rotated_answer_unsaved_loses_that_grant_alone(
    sandbox: SandboxFixture, store_url: str, tmp_path: Path
) -> None:
    """The one loss no client can undo: the provider rotated, the process died before saving.

    The sandbox holds its answers back after rotating (latency, stage ``after``),
    so the kill lands deterministically between the provider's answer and the save.
    """
    keys = await seed_tokens(sandbox, store_url, TOKENS)
    batch = Batch(account_limit=None)
    async with app_engine(batch, sandbox, store_url) as engine:
        before = await refresh_tokens_of(engine, keys)
    state, report = tmp_path / "state.jsonl", tmp_path / "report.json"
    env = {**os.environ, "FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    child = subprocess.Popen(  # noqa: ASYNC220 - the test reads its progress lines as they come
        _command(store_url, state, report),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert child.stderr is not None
    settled = 0
    for line in child.stderr:
        settled += line.startswith("refreshed ")
        if settled == TOKENS // 3:
            break
    sandbox.settings.faults = FaultPlan([Fault("latency", stage="after", delay=3600)])
    answered = len(successful_refreshes(sandbox, before))
    for _ in range(6000):  # until one more is rotated and held back (a minute at most)
        if len(successful_refreshes(sandbox, before)) > answered:
            break
        await asyncio.sleep(0.01)
    child.kill()
    assert child.wait(timeout=30) == -signal.SIGKILL
    sandbox.settings.faults = FaultPlan([])

    done = subprocess.run(  # noqa: ASYNC221 - the rerun under test; the sandbox serves from its own thread
        _command(store_url, state, report, "--quiet"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    final = json.loads(report.read_text())
    lost = sorted(i["item"] for i in final["items"] if i["outcome"] == "dead")
    assert 1 <= len(lost) <= 32 and done.returncode == 4, (done.stderr, final["counts"])
    assert final["complete"] and final["counts"] == {"refreshed": TOKENS - len(lost), "dead": len(lost)}
    assert all(f"dead {key} invalid_grant" in done.stderr for key in lost), (
        "--quiet names what needs attention"
    )
    assert f"refresh: {TOKENS} item(s)" in done.stderr, "and the summary"
    assert successful_refreshes(sandbox, before) == dict.fromkeys(keys, 1), "no token was refreshed twice"
    async with app_engine(batch, sandbox, store_url) as engine:
        for key in keys:
            token = await engine.get_token(key)
            assert token is not None and token.dead == (key in lost)
