"""SECURITY.md 15: tokens at rest are encrypted when a key is configured; the SQLite file is private.

What each durable backend holds is read back raw (the file, every key, every row) by the
backend helpers of ``tests/stores``, behind the store's back.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import flowengine as fe
import pytest
from flowengine import new_store_key

from tests.conftest import SandboxFixture
from tests.security.helpers import podio_variant, query_of, with_pkce
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
