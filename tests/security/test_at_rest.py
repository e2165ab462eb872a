"""SECURITY.md 15 and 30: tokens at rest are encrypted when a key is configured; the SQLite file and
every folder made for secrets are private; superseded secrets do not linger in the store's files.

What each durable backend holds is read back raw (the file, every key, every row) by the
backend helpers of ``tests/stores``, behind the store's back.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import flowengine as fe
import pytest
from flowengine import new_store_key
from flowengine.testing import FakeClock

from tests.conftest import SandboxFixture
from tests.security.helpers import (
    podio_variant,
    query_of,
    with_pkce,
)
from tests.stores.backends import Backend


def _keyed(url: str, key_file: Path) -> str:
    return f"{url}{'&' if '?' in url else '?'}key_file={key_file}"


async def _secrets_at_rest(url: str, sandbox: SandboxFixture) -> list[str]:
    """Store a token and a flow waiting for its exchange (code and verifier); return those secrets."""
    async with fe.AsyncEngine(
        podio_variant(with_pkce), client=sandbox.client, endpoints=sandbox.endpoints, store=url
    ) as engine:
        done = await engine.callback(await sandbox.consent((await engine.start()).authorization_url))
        token = await engine.token_for(done)
        assert token is not None and token.refresh_token is not None
        fresh = await engine.refresh(token)
    async with fe.AsyncEngine(
        podio_variant(with_pkce),
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        store=url,
        auto_exchange=False,
    ) as engine:
        pending = await engine.start()
        callback = await sandbox.consent(pending.authorization_url)
        assert (await engine.callback(callback)).state == "authorized"
    assert pending.code_verifier is not None and fresh.refresh_token is not None
    return [fresh.access_token, fresh.refresh_token, query_of(callback)["code"], pending.code_verifier]


async def test_sec15_a_keyed_store_holds_no_token_code_or_verifier_in_the_clear(
    durable_backend: Backend, durable_url: str, sandbox: SandboxFixture, tmp_path: Path
) -> None:
    assert durable_backend.raw_dump is not None
    key_file = tmp_path / "store.key"
    key_file.write_text(new_store_key())
    key_file.chmod(0o600)
    secrets = await _secrets_at_rest(_keyed(durable_url, key_file), sandbox)
    raw = durable_backend.raw_dump(durable_url)
    assert raw, "the dump is empty: the test would prove nothing"
    for secret in secrets:
        assert secret.encode() not in raw


async def test_sec15_without_a_key_the_same_dump_shows_them(
    durable_backend: Backend, durable_url: str, sandbox: SandboxFixture
) -> None:
    """The other side of the test above: it can fail, because unkeyed records are plain JSON."""
    assert durable_backend.raw_dump is not None
    secrets = await _secrets_at_rest(durable_url, sandbox)
    raw = durable_backend.raw_dump(durable_url)
    assert all(secret.encode() in raw for secret in secrets)


async def test_sec15_a_keyed_store_cannot_be_read_without_the_key(
    durable_backend: Backend, durable_url: str, sandbox: SandboxFixture, tmp_path: Path
) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_text(new_store_key())
    await _secrets_at_rest(_keyed(durable_url, key_file), sandbox)
    key = "podio:user:1001"
    async with fe.AsyncEngine("podio", client=sandbox.client, store=durable_url) as engine:
        with pytest.raises(fe.StoreError) as caught:
            await engine.get_token(key)
        with pytest.raises(fe.StoreError) as listing:  # not an empty list: the key is what is missing
            await engine.tokens()
    assert caught.value.code == listing.value.code == "store_key_missing"
    other = tmp_path / "other.key"
    other.write_text(new_store_key())
    async with fe.AsyncEngine("podio", client=sandbox.client, store=_keyed(durable_url, other)) as engine:
        with pytest.raises(fe.StoreError) as wrong:
            await engine.get_token(key)
    assert wrong.value.code == "store_corrupt"
    async with fe.AsyncEngine("podio", client=sandbox.client, store=_keyed(durable_url, key_file)) as engine:
        assert await engine.get_token(key) is not None


async def test_sec15_the_sqlite_file_and_its_folders_are_private(
    sandbox: SandboxFixture, tmp_path: Path
) -> None:
    previous = os.umask(0o022)  # a permissive umask: the store must not rely on the caller's
    try:
        path = tmp_path / "new" / "deeper" / "flowengine.db"
        async with fe.AsyncEngine(
            "podio", client=sandbox.client, endpoints=sandbox.endpoints, store=f"sqlite://{path}"
        ) as engine:
            await engine.callback(await sandbox.consent((await engine.start()).authorization_url))
            files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()}
    finally:
        os.umask(previous)
    assert modes.get(path.name) == 0o600
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


async def test_sec15_a_loose_sqlite_file_is_made_private_on_open(
    sandbox: SandboxFixture, tmp_path: Path
) -> None:
    path = tmp_path / "loose.db"
    path.touch()
    path.chmod(0o644)
    async with fe.AsyncEngine("podio", client=sandbox.client, store=f"sqlite://{path}") as engine:
        await engine.flows()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- SECURITY.md 30: superseded secrets do not linger in the store's files -------------------------


def _copy_of_the_files(path: Path) -> bytes:
    """What a copy of the database, its WAL and its index taken right now holds (no checkpoint first)."""
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return b"".join(file.read_bytes() for file in files if file.exists())


async def test_sec30_a_copy_of_the_sqlite_files_taken_while_the_engine_runs_holds_no_superseded_secret(
    sandbox: SandboxFixture, tmp_path: Path
) -> None:
    """No key: records are plain JSON, so anything left in the WAL or free pages would show."""
    path = tmp_path / "store.db"
    async with fe.AsyncEngine(
        podio_variant(with_pkce), client=sandbox.client, endpoints=sandbox.endpoints, store=f"sqlite://{path}"
    ) as engine:
        flow = await engine.start()
        callback = await sandbox.consent(flow.authorization_url)
        pending = _copy_of_the_files(path)
        done = await engine.callback(callback)
        after_exchange = _copy_of_the_files(path)
        first = await engine.token_for(done)
        assert first is not None and first.refresh_token is not None
        second = await engine.refresh(first)
        third = await engine.refresh(second)
        after_refreshes = _copy_of_the_files(path)
        await engine.store.delete_token(third.key)
        after_delete = _copy_of_the_files(path)
    assert flow.code_verifier is not None and second.refresh_token is not None
    spent = [query_of(callback)["code"], flow.code_verifier]
    # The copies can show a secret: the verifier is there while the flow waits for its callback,
    # and the live token is there until it is deleted.
    assert flow.code_verifier.encode() in pending
    assert third.access_token.encode() in after_refreshes
    for secret in spent:
        assert secret.encode() not in after_exchange, "a spent code or verifier lingers"
    for secret in [
        *spent,
        first.access_token,
        first.refresh_token,
        second.access_token,
        second.refresh_token,
    ]:
        assert secret.encode() not in after_refreshes, "a superseded token lingers"
    for secret in (third.access_token, third.refresh_token or ""):
        assert secret.encode() not in after_delete, "a deleted token lingers"


async def test_sec30_a_purged_flow_leaves_no_verifier_behind(sandbox: SandboxFixture, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    clock = FakeClock(time.time())
    async with fe.AsyncEngine(
        podio_variant(with_pkce),
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        store=f"sqlite://{path}",
        clock=clock,
    ) as engine:
        flow = await engine.start()
        assert flow.code_verifier is not None
        assert flow.code_verifier.encode() in _copy_of_the_files(path)
        clock.advance(3600)
        assert await engine.purge() == 1
        assert flow.code_verifier.encode() not in _copy_of_the_files(path)


def _pending(n: int, **secrets: Any) -> fe.Flow:
    """A flow as a store keeps it, holding the given secrets (code, code_verifier, device)."""
    return fe.Flow(
        id=f"flow-{n}",
        spec="podio",
        state="redirected",
        created_at=time.time(),
        expires_at=time.time() + 600,
        client_id="client",
        redirect_uri="https://example.com/cb",
        state_hash=fe.digest(f"state-{n}"),
        **secrets,
    )


def _device(device_code: str | None) -> fe.DeviceAuthorization:
    return fe.DeviceAuthorization("WDJB-MJHT", "https://example.com/device", device_code=device_code)


def _opened(path: Path) -> AbstractAsyncContextManager[fe.Store]:
    return _opened_at(f"sqlite://{path}")


@asynccontextmanager
async def _opened_at(url: str) -> AsyncIterator[fe.Store]:
    store = fe.open_store(url)
    try:
        yield store
    finally:
        await store.aclose()


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


# The flow's secrets before and after a compare-and-set; what the write superseded; what it kept.
SUPERSEDING: dict[str, tuple[dict[str, object], dict[str, object], str, list[str]]] = {
    "code and verifier dropped": (
        {"code": "code-spent-4e1f", "code_verifier": "verifier-spent-88c2"},
        {},
        "code-spent-4e1f",
        [],
    ),
    "verifier replaced": (
        {"code_verifier": "verifier-old-5d0a"},
        {"code_verifier": "verifier-new-19bb"},
        "verifier-old-5d0a",
        ["verifier-new-19bb"],
    ),
    "code replaced, verifier kept": (
        {"code": "code-old-7c3e", "code_verifier": "verifier-kept-c1d4"},
        {"code": "code-new-a9f0", "code_verifier": "verifier-kept-c1d4"},
        "code-old-7c3e",
        ["code-new-a9f0", "verifier-kept-c1d4"],
    ),
    "device code dropped": (
        {"device": _device("device-spent-2b6e")},
        {"device": _device(None)},
        "device-spent-2b6e",
        [],
    ),
}


@pytest.mark.parametrize("case", list(SUPERSEDING))
async def test_sec30_a_compare_and_set_that_drops_or_replaces_a_flow_secret_leaves_no_copy(
    tmp_path: Path, case: str
) -> None:
    before, after, gone, kept = SUPERSEDING[case]
    path = tmp_path / "store.db"
    async with _opened(path) as store:
        await store.create(_pending(1, **before))
        assert gone.encode() in _copy_of_the_files(path)
        assert await store.compare_and_set(attrs.evolve(_pending(1, **after), version=2), 1)
        copy = _copy_of_the_files(path)
    assert gone.encode() not in copy, "a superseded secret lingers"
    assert all(secret.encode() in copy for secret in kept)  # the copy does show what the flow holds


async def test_sec30_a_deleted_flow_leaves_no_secret_behind(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with _opened(path) as store:
        await store.create(_pending(1, code_verifier="verifier-deleted-3f70"))
        assert await store.delete("flow-1")
        assert b"verifier-deleted-3f70" not in _copy_of_the_files(path)


async def test_sec30_writes_that_supersede_no_secret_leave_the_wal_as_it_is(tmp_path: Path) -> None:
    """Emptying the WAL costs a checkpoint and its fsync, so it is done only when a secret was
    superseded: not for a step that keeps the flow's secrets, nor for any step of a flow holding none."""
    path = tmp_path / "store.db"
    async with _opened(path) as store:
        await store.create(_pending(1, code_verifier="verifier-live-6a2d"))
        flow = attrs.evolve(_pending(1, code_verifier="verifier-live-6a2d", code="code-live-0e95"), version=2)
        assert await store.compare_and_set(flow, 1)  # a code added, the verifier kept
        assert _wal(path) > 0
        assert await store.compare_and_set(attrs.evolve(flow, version=3, code=None, code_verifier=None), 2)
        assert _wal(path) == 0  # both superseded: the WAL was emptied (the test above says what went)
        for version in (4, 5):
            assert await store.compare_and_set(attrs.evolve(_pending(1), version=version), version - 1)
        await store.create(_pending(2))
        assert await store.delete("flow-2")
        assert _wal(path) > 0


async def test_sec30_a_checkpoint_another_connection_held_off_is_done_by_the_next_call(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with _opened(path) as store:
        await store.create(_pending(1, code_verifier="verifier-spent-d41c"))
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM flows").fetchall()  # a read snapshot the WAL must keep
            assert await store.compare_and_set(attrs.evolve(_pending(1), version=2), 1)
            assert b"verifier-spent-d41c" in _copy_of_the_files(path)  # the checkpoint could not complete
        finally:
            reader.close()
        assert await store.get("flow-1") is not None  # any later call: it supersedes nothing itself
        assert b"verifier-spent-d41c" not in _copy_of_the_files(path)


async def test_sec30_calls_given_up_while_queued_do_not_keep_the_wal_from_being_emptied(
    tmp_path: Path,
) -> None:
    """A call cancelled before it ran (a deadline, a client gone) is skipped and counted as done:
    counted as still queued, it would keep the store from ever seeing itself idle, and so from
    emptying the WAL after a later write that supersedes a secret."""
    path = tmp_path / "store.db"
    async with _opened_at(f"sqlite://{path}?timeout=60") as store:
        await store.create(_pending(1, code_verifier="verifier-spent-77ab"))
        await store.create(_pending(2))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # SQLite's write lock: the store's next write waits for it
        try:
            write = asyncio.ensure_future(store.compare_and_set(attrs.evolve(_pending(2), version=2), 1))
            await asyncio.sleep(0)  # one turn of the loop: the write is on the worker, waiting
            given_up = [asyncio.ensure_future(store.get("flow-1")) for _ in range(5)]
            await asyncio.sleep(0)  # queued behind the write
            for call in given_up:
                call.cancel()
            assert all(
                isinstance(r, asyncio.CancelledError)
                for r in await asyncio.gather(*given_up, return_exceptions=True)
            )
        finally:
            holder.execute("COMMIT")
            holder.close()
        assert await write
        assert await store.compare_and_set(attrs.evolve(_pending(1), version=2), 1)  # supersedes the verifier
        assert b"verifier-spent-77ab" not in _copy_of_the_files(path)


async def test_sec30_a_flow_written_before_the_store_recorded_its_secrets_counts_as_holding_them(
    tmp_path: Path,
) -> None:
    """A database of schema version 2 has no ``holds_secret`` column: its flows may hold a secret."""
    from flowengine import codec_for

    from flowengine_sqlite._schema import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    flow = _pending(1, code_verifier="verifier-old-schema-77e1")
    conn.execute(
        "INSERT INTO flows (id, spec, state, state_hash, version, created_at, expires_at, record)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (flow.id, flow.spec, flow.state, flow.state_hash, flow.version, flow.created_at, flow.expires_at,
         codec_for({}).dump_flow(flow)),
    )  # fmt: skip
    conn.close()
    async with _opened(path) as store:
        assert await store.compare_and_set(attrs.evolve(_pending(1), version=2), 1)
        assert b"verifier-old-schema-77e1" not in _copy_of_the_files(path)


# --- SECURITY.md 15: every folder made for secrets is private whatever the umask ---------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o002])
def test_sec15_batch_state_folders_and_files_are_private_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    from flowengine_batch import Journal

    state = tmp_path / "new" / "deeper" / "refresh.jsonl"
    previous = os.umask(umask)
    try:
        journal = Journal(state)
        journal.open("refresh:all")
        journal.start("refresh:all", [])
        journal.close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.parent.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_sec15_the_batch_commands_default_state_folder_is_private(
    sandbox: SandboxFixture, tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from flowengine import _plugins as plugins
    from flowengine.cli import cli

    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)  # as main() does: batch is a plugin's
    data = tmp_path / "xdg-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setenv("FLOWENGINE_SANDBOX_URL", sandbox.server.url)
    previous = os.umask(umask)
    try:
        args = [
            "batch",
            "refresh",
            "--all",
            "--sandbox",
            "--quiet",
            "--store",
            f"sqlite://{tmp_path / 's.db'}",
        ]
        result = CliRunner().invoke(cli, args)
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    for folder in (data, data / "flowengine", data / "flowengine" / "batch"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_sec15_make_private_folder_leaves_existing_folders_alone(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir(mode=0o755)
    parent.chmod(0o755)
    previous = os.umask(0)
    try:
        made = fe.make_private_folder(parent / "a" / "b")
    finally:
        os.umask(previous)
    assert made == parent / "a" / "b"
    assert stat.S_IMODE(parent.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (parent / "a", made)} == {0o700}
