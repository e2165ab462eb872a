"""SECURITY.md 33: a spec asks for nothing unbounded, and a store file swapped under the engine is noticed.

``machine.ttl`` (how long a flow waits for its callback) is at most a day, ``token.leeway`` at
most an hour; every store then purges what a spec can ask for. A SQLite file deleted or
replaced while an engine has it open makes the next call fail with ``store_replaced`` instead
of writing into a file no other process will ever read.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import flowengine as fe
import pytest
from flowengine.testing import FakeClock

from flowengine_sandbox.plugin import PodioSandbox
from tests.conftest import SandboxFixture
from tests.security.helpers import (
    podio_data,
    podio_variant,
)

DAY = 86_400


@pytest.mark.parametrize("ttl", [10**100, 10**20, DAY + 1, 0, -1])
def test_sec33_a_flow_ttl_beyond_a_day_or_below_a_second_is_spec_invalid(ttl: int) -> None:
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(_with(machine_ttl=ttl))
    assert [p.path for p in caught.value.problems] == ["$.machine.ttl"]
    with pytest.raises(fe.SpecError) as caught:  # in YAML, past 32 digits the number itself is refused
        fe.load_spec(_as_yaml(_with(machine_ttl=ttl)))
    [problem] = caught.value.problems
    assert problem.path == "$.machine.ttl" or "integer longer than 32" in problem.message


@pytest.mark.parametrize("leeway", [10**100, 3_601, -1])
def test_sec33_a_leeway_beyond_an_hour_is_spec_invalid(leeway: int) -> None:
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(_with(leeway=leeway))
    assert [p.path for p in caught.value.problems] == ["$.token.leeway"]


@pytest.mark.parametrize("status", [10**100, 99, 600])
def test_sec33_a_rate_limit_status_must_be_an_http_status(status: int) -> None:
    data = podio_data()
    data["token"]["rate_limit_status"] = [429, status]
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(data)
    assert [p.path for p in caught.value.problems] == ["$.token.rate_limit_status[1]"]


async def test_sec33_on_every_store_a_flow_of_the_longest_ttl_is_purged_once_it_expires(
    store_url: str, sandbox: SandboxFixture
) -> None:
    spec = fe.load_spec(_with(machine_ttl=DAY, leeway=3_600))
    clock = FakeClock(time.time())
    async with fe.AsyncEngine(
        spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store_url, clock=clock
    ) as engine:
        flow = await engine.start()
        assert flow.expires_at == clock.now + DAY
        clock.advance(DAY + 1)
        assert await engine.purge() == 1
        assert await engine.flows() == []


# --- a SQLite file deleted or replaced under a running engine ------------------------------------


def _files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _delete(path: Path) -> None:
    for file in _files(path):
        file.unlink(missing_ok=True)


def _replace(path: Path, tmp_path: Path) -> None:
    """Put another, empty store's file where ``path`` was (a restore from a backup, a deploy)."""
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    _delete(path)
    shutil.copy(other, path)


@pytest.mark.parametrize("swap", ["deleted", "replaced"])
async def test_sec33_a_refresh_on_a_swapped_sqlite_file_fails_typed_and_sends_nothing(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path, swap: str
) -> None:
    path = tmp_path / "store.db"
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=f"sqlite://{path}"
    ) as engine:
        done = await engine.callback(await sandbox.consent((await engine.start()).authorization_url))
        token = await engine.token_for(done)
        assert token is not None
        _delete(path) if swap == "deleted" else _replace(path, tmp_path)
        sent = len(sandbox.token_requests())
        with pytest.raises(fe.StoreError) as caught:
            await engine.refresh(token)
        assert caught.value.code == "store_replaced"
        assert len(sandbox.token_requests()) == sent  # nothing went to the provider
        # The next call reads the file now at the path, as a new engine on the URL would.
        assert await engine.get_token(token.key) is None
    async with fe.AsyncEngine(podio_spec, client=sandbox.client, store=f"sqlite://{path}") as fresh:
        assert await fresh.get_token(token.key) is None


@pytest.mark.parametrize("swap", ["deleted", "replaced"])
async def test_sec33_a_grant_on_a_swapped_sqlite_file_is_not_reported_saved(
    sandbox: SandboxFixture, tmp_path: Path, swap: str
) -> None:
    spec = fe.load_spec("podio-app")
    path = tmp_path / "store.db"
    endpoints = PodioSandbox(spec, sandbox.server.url).endpoints
    inputs = {"app_id": "2002", "app_token": "sandbox-app-token"}  # the sandbox's own app
    async with fe.AsyncEngine(
        spec, client=sandbox.client, endpoints=endpoints, store=f"sqlite://{path}"
    ) as engine:
        first = await engine.grant("app", inputs)
        _delete(path) if swap == "deleted" else _replace(path, tmp_path)
        with pytest.raises(fe.StoreError) as caught:
            await engine.grant("app", inputs)
        assert caught.value.code == "store_replaced"
        again = await engine.grant("app", inputs)  # the file at the path now takes it, for everyone
    async with fe.AsyncEngine(spec, client=sandbox.client, store=f"sqlite://{path}") as fresh:
        assert await fresh.get_token(first.key) == again


async def test_sec33_a_swapped_file_is_never_checkpointed_into_or_its_wal_deleted(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    """Closing the stale connection must not touch the new database's ``-wal`` by name."""
    path = tmp_path / "store.db"
    async with fe.AsyncEngine(podio_spec, client=sandbox.client, store=f"sqlite://{path}") as stale:
        await stale.flows()
        _delete(path)
        async with fe.AsyncEngine(
            podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=f"sqlite://{path}"
        ) as other:
            flow = await other.start()
            wal = path.with_name(path.name + "-wal")
            before = wal.read_bytes() if wal.exists() else b""
            await stale.aclose()  # the stale one closes while the other still has the file open
            assert (wal.read_bytes() if wal.exists() else b"") == before
            assert await other.get(flow.id) is not None


def _with(*, machine_ttl: int | None = None, leeway: int | None = None) -> dict[str, Any]:
    data = podio_data()
    if machine_ttl is not None:
        data["machine"]["ttl"] = machine_ttl
    if leeway is not None:
        data["token"]["leeway"] = leeway
    return data


def _as_yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def test_sec33_the_bounds_are_the_documented_ones() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text(encoding="utf-8")
    assert "at most 86400 seconds (a day)" in docs and "at most 3600 seconds (an hour)" in docs
    spec = podio_variant(lambda d: (d["machine"].update(ttl=DAY), d["token"].update(leeway=3_600)))
    assert spec.machine is not None and spec.machine.ttl == DAY and spec.token.leeway == 3_600
