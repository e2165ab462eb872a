"""Building a fleet's test world: tokens in the shared store, issued by a sandbox in another process."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import flowengine as fe

from flowengine_sandbox.state import fingerprint
from tests.fleet.services import SandboxAdmin

FIRST_APP = 3000


async def seed_tokens(admin: SandboxAdmin, store: str, count: int) -> dict[str, str]:
    """``count`` app tokens (one app, so one account, each) in ``store``; key -> refresh token fingerprint."""
    apps = {str(app_id): f"app-token-{app_id}" for app_id in range(FIRST_APP, FIRST_APP + count)}
    await admin.post("/_sandbox/apps", {"apps": apps})
    spec = fe.load_spec("podio-app")
    with fe.open_sandbox(spec, admin.url) as box:
        client, endpoints = box.client, dict(box.endpoints)
    gate = asyncio.Semaphore(32)
    async with fe.AsyncEngine(spec, client=client, store=store, endpoints=endpoints) as engine:

        async def grant(app_id: str, app_token: str) -> fe.Token:
            async with gate:
                return await engine.grant("app", {"app_id": app_id, "app_token": app_token})

        tokens = await asyncio.gather(*(grant(app_id, app_token) for app_id, app_token in apps.items()))
    assert all(token.refresh_token for token in tokens)
    return {token.key: fingerprint(token.refresh_token or "") for token in tokens}


async def refreshes_by_token(
    admin: SandboxAdmin, seeded: dict[str, str]
) -> tuple[Counter[str], Counter[int]]:
    """From the sandbox's record: refresh requests per token key (``<rotated>``: with an unseeded
    refresh token, a second refresh of a rotated one), and refresh requests by HTTP status."""
    owner = {value: key for key, value in seeded.items()}
    per_token: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    records = await admin.get("/_sandbox/token-requests")
    assert isinstance(records, list)
    for record in records:
        if record["grant_type"] == "refresh_token":
            per_token[owner.get(record["fields"]["refresh_token"], "<rotated>")] += 1
            statuses[record["status"]] += 1
    return per_token, statuses


async def changed_tokens(store: str, seeded: dict[str, str]) -> tuple[set[str], set[str]]:
    """Keys whose stored refresh token is no longer the seeded one, and keys marked dead."""
    opened = fe.open_store(store)
    try:
        tokens = await opened.list_tokens(provider="podio-app")
    finally:
        await opened.aclose()
    changed = {
        t.key for t in tokens if t.key in seeded and fingerprint(t.refresh_token or "") != seeded[t.key]
    }
    return changed, {t.key for t in tokens if t.dead}


def worker_env(store: str, broker: str, sandbox: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A worker's environment: everything it needs, none of it in a message."""
    return {
        "FLOWENGINE_STORE": store,
        "FLOWENGINE_CELERY_BROKER": broker,
        "FLOWENGINE_CELERY_SPECS": "podio-app",
        "FLOWENGINE_CELERY_SANDBOX": sandbox,
        "FLOWENGINE_CELERY_LEASE_TTL": "10s",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        **extra,
    }
