"""Helpers for the batch tests: many apps in the sandbox, and tokens for them in a store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import flowengine as fe
import pytest

from flowengine_batch import Batch, GrantItem
from flowengine_sandbox.settings import SandboxApp
from tests.conftest import SandboxFixture

FIRST_APP = 3000
#: Fast backoff: the tests prove behaviour, not patience.
FAST_RETRY = fe.RetryPolicy(attempts=6, base_delay=0.001, max_delay=0.05)


def register_apps(sandbox: SandboxFixture, count: int, first: int = FIRST_APP) -> list[GrantItem]:
    """Register ``count`` apps with the sandbox; return one grant item per app."""
    for app_id in range(first, first + count):
        sandbox.settings.apps[app_id] = SandboxApp(app_id, f"app-token-{app_id}")
    return [
        GrantItem(f"row {n + 1}", {"app_id": str(app_id), "app_token": f"app-token-{app_id}"})
        for n, app_id in enumerate(range(first, first + count))
    ]


async def seed_tokens(sandbox: SandboxFixture, store: str, count: int, first: int = FIRST_APP) -> list[str]:
    """``count`` app tokens in ``store``, granted by the sandbox; their keys, sorted."""
    items = register_apps(sandbox, count, first)
    batch = Batch(concurrency=16, account_limit=None)
    async with app_engine(batch, sandbox, store) as engine:
        report = await batch.grant(engine, "app", items).wait()
    assert report.counts == {"granted": count}, report.to_json()
    return sorted(r.token_key for r in report.results.values() if r.token_key)


def app_engine(batch: Batch, sandbox: SandboxFixture, store: str, **options: object) -> fe.AsyncEngine:
    """An engine for podio-app.yaml, made by ``batch``, pointed at the sandbox."""
    return batch.engine(
        "podio-app",
        client=sandbox.client,
        store=store,
        endpoints={"token": sandbox.endpoints["token"]},
        **options,  # type: ignore[arg-type]
    )


def successful_refreshes(sandbox: SandboxFixture, refresh_tokens: dict[str, str]) -> Counter[str]:
    """Per token key, how many refresh requests the sandbox answered 200 to, by refresh token.

    A refresh with any refresh token not in ``refresh_tokens`` (the ones stored
    before the run) would be a second refresh of a rotated token: it counts
    under ``"<rotated>"``.
    """
    owner = {value: key for key, value in refresh_tokens.items()}
    counts: Counter[str] = Counter()
    for request in sandbox.token_requests():
        if request.grant_type == "refresh_token" and request.status == 200:
            counts[owner.get(request.fields["refresh_token"], "<rotated>")] += 1
    return counts


async def refresh_tokens_of(engine: fe.AsyncEngine, keys: Sequence[str]) -> dict[str, str]:
    """The stored refresh token of each key (test code may read secrets; the batch never prints them)."""
    found = {}
    for key in keys:
        token = await engine.get_token(key)
        assert token is not None and token.refresh_token
        found[key] = token.refresh_token
    return found


def flowengine(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``flowengine`` command in a subprocess, as a cron job would."""
    return subprocess.run(
        [sys.executable, "-c", "from flowengine.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh SQLite store: the CLI's default kind, shared by processes."""
    return f"sqlite:///{tmp_path / 'tokens.db'}"
