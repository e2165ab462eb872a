"""Two workers (two engines, one SQLite store) refresh an expiring token once between them.

Nothing is shared in memory: the engines' single-flight does not span them, only the
store's ``refresh:<key>`` lease does, as between two processes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import flowengine as fe
import httpx
from flowengine.auth import HttpxAuth

from tests.auth.conftest import ACCESS_TTL, Clocks, log_in, refreshes
from tests.conftest import SandboxFixture


async def test_two_workers_bursting_on_an_expired_token_refresh_it_once(
    sandbox: SandboxFixture, clocks: Clocks, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'tokens.db'}"
    options: dict[str, Any] = {
        "client": sandbox.client,
        "endpoints": sandbox.endpoints,
        "clock": clocks.engine,
    }
    url = f"{sandbox.server.url}/user/status"
    sent: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.headers.get("authorization"))

    async with (
        fe.AsyncEngine("podio", store=store, **options) as first,
        fe.AsyncEngine("podio", store=store, **options) as second,
    ):
        token = await log_in(first, sandbox)
        clients = [
            httpx.AsyncClient(
                auth=HttpxAuth(engine, key=token.key), event_hooks={"request": [record]}, trust_env=False
            )
            for engine in (first, second)
        ]
        try:
            assert [(await http.get(url)).status_code for http in clients] == [200, 200]
            clocks.advance(ACCESS_TTL)

            responses = await asyncio.gather(*(http.get(url) for http in clients for _ in range(20)))
        finally:
            for http in clients:
                await http.aclose()

    assert [r.status_code for r in responses] == [200] * 40
    assert refreshes(sandbox) == 1
    assert len(sent) == 2 + 40  # refreshed ahead by both workers: nothing refused, nothing retried
    assert len(set(sent[2:])) == 1 and sent[2] != token.authorization_header()
