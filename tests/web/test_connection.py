"""The web frontend starts flows of a multi-tenant spec: connection values from the query or a host hook."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import flowengine as fe
import httpx
import pytest
from starlette.requests import Request

from flowengine_sandbox.plugin import SpecSandbox
from flowengine_web import create_app
from tests.conftest import SandboxFixture

SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture
async def zendesk(sandbox: SandboxFixture) -> AsyncIterator[tuple[fe.AsyncEngine, SpecSandbox]]:
    spec = fe.load_spec("zendesk")
    with SpecSandbox(spec, sandbox.server.url, sandbox.settings) as box:
        async with fe.AsyncEngine(spec, client=box.client, endpoints=box.endpoints) as engine:
            yield engine, box


async def _browse(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as browser:
        return await browser.get(path)


async def _run(app: Any, box: SpecSandbox, path: str) -> tuple[str, httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as browser:
        started = await browser.get(path)
        assert started.status_code == 302, started.text
        location = started.headers["location"]
        callback = await box.consent(location, approve=True)
        parts = urlsplit(callback)
        finished = await browser.get(f"{parts.path}?{parts.query}")
        return location, finished


async def test_the_start_url_query_names_the_tenant(zendesk: tuple[fe.AsyncEngine, SpecSandbox]) -> None:
    engine, box = zendesk
    location, finished = await _run(
        create_app(engine, secret_key=SECRET), box, "/auth/zendesk?subdomain=acme"
    )
    assert "/acme.zendesk.com/oauth/authorizations/new?" in location
    assert finished.status_code == 303 and "/result/" in finished.headers["location"]
    [token] = await engine.tokens()
    assert token.key.startswith("zendesk@acme:")


async def test_a_host_hook_names_the_tenant_and_the_query_cannot_override_it(
    zendesk: tuple[fe.AsyncEngine, SpecSandbox],
) -> None:
    engine, box = zendesk
    seen: list[str] = []

    def connection(request: Request, name: str) -> Mapping[str, str]:
        seen.append(name)
        return {"subdomain": "signed-in-tenant"}

    app = create_app(engine, secret_key=SECRET, connection=connection)
    location, _finished = await _run(app, box, "/auth/zendesk?subdomain=other")
    assert seen == ["zendesk"]
    assert "/signed-in-tenant.zendesk.com/" in location


@pytest.mark.parametrize("path", ["/auth/zendesk", "/auth/zendesk?subdomain=evil.com%2F"])
async def test_a_missing_or_bad_tenant_is_refused_before_anyone_is_sent_anywhere(
    zendesk: tuple[fe.AsyncEngine, SpecSandbox], path: str
) -> None:
    engine, _box = zendesk
    answer = await _browse(create_app(engine, secret_key=SECRET), path)
    assert answer.status_code != 302
    assert "connection_invalid" in answer.text
    assert await engine.flows() == []
