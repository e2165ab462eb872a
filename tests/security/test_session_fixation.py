"""SECURITY.md 31: the web frontend issues a fresh session at every flow start; ``__Host-`` on https.

Session fixation: an attacker gets a valid session cookie of their own from the site and plants
it in the victim's browser (a sibling subdomain, a plain-http page, a shared machine). Before,
the frontend kept a cookie it found, so the victim's flow was bound to a session the attacker
also held: the attacker could deliver the victim's callback, or read the victim's result. Now
every start binds its flow to a new session id and sets it, whatever cookie came in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import flowengine as fe
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from flowengine_web import create_app
from tests.conftest import SandboxFixture
from tests.security.helpers import ScriptedTransport, query_of

KEY = "fixation-tests-web-secret-0123456789"


def _cookie(response: httpx.Response) -> tuple[str, str, set[str]]:
    """The name, value and attributes of the one cookie a response sets."""
    pair, *attributes = [part.strip() for part in response.headers["set-cookie"].split(";")]
    name, _, value = pair.partition("=")
    return name, value, {a.lower() for a in attributes}


@pytest.fixture
async def browsers(engine: fe.AsyncEngine) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def make(app: Any = None, origin: str = "http://127.0.0.1:8000") -> httpx.AsyncClient:
        app = app or create_app(engine, secret_key=KEY, base_url=origin)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=origin)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_sec31_a_planted_session_cookie_is_replaced_at_the_start_and_binds_nothing(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, browsers: Any
) -> None:
    app = create_app(engine, secret_key=KEY, base_url="http://127.0.0.1:8000")
    attacker, victim = browsers(app), browsers(app)
    name, planted, _ = _cookie(await attacker.get("/auth/podio"))  # the attacker's own, valid session
    victim.cookies.set(name, planted, domain="127.0.0.1", path="/")
    started = await victim.get("/auth/podio")
    assert started.status_code == 302
    _, issued, _ = _cookie(started)
    assert issued != planted and planted.split(".")[0] not in issued
    assert victim.cookies[name] == issued
    callback = await sandbox.consent(started.headers["location"])
    query = callback.split("?", 1)[1]

    # The attacker, holding the planted cookie, cannot finish the victim's flow...
    stolen = await attacker.get(f"/auth/podio/callback?{query}")
    assert stolen.headers["location"] == "/auth/podio/error/session_mismatch"
    assert sandbox.token_requests() == []
    # ...while the victim can, and only the victim sees the result.
    done = await victim.get(f"/auth/podio/callback?{query}")
    result_url = done.headers["location"]
    assert result_url.startswith("/auth/podio/result/")
    assert "<h1>Authorized</h1>" in (await victim.get(result_url)).text
    assert (await attacker.get(result_url)).status_code == 404
    assert len(sandbox.token_requests()) == 1


async def test_sec31_every_start_issues_a_new_session(engine: fe.AsyncEngine, browsers: Any) -> None:
    browser = browsers()
    values = set()
    for _ in range(3):
        _, value, _ = _cookie(await browser.get("/auth/podio"))
        values.add(value.split(".")[0])
    assert len(values) == 3
    assert len({flow.session_hash for flow in await engine.flows()}) == 3


async def test_sec31_on_https_the_cookie_is_host_prefixed_secure_and_path_root(
    engine: fe.AsyncEngine, browsers: Any
) -> None:
    browser = browsers(origin="https://app.example.com")
    name, _, attributes = _cookie(await browser.get("/auth/podio"))
    assert name == "__Host-flowengine_session"
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)


async def test_sec31_mounted_below_the_root_on_https_the_cookie_is_still_host_prefixed(
    engine: fe.AsyncEngine, browsers: Any, sandbox: SandboxFixture
) -> None:
    host = Starlette(routes=[Mount("/login", app=create_app(engine, secret_key=KEY))])
    browser = browsers(host, origin="https://app.example.com")
    started = await browser.get("/login/auth/podio")
    name, _, attributes = _cookie(started)
    assert name.startswith("__Host-flowengine_session-") and "path=/" in attributes and "secure" in attributes
    other = Starlette(routes=[Mount("/admin", app=create_app(engine, secret_key=KEY))])
    assert (
        _cookie(await browsers(other, origin="https://app.example.com").get("/admin/auth/podio"))[0] != name
    )


async def test_sec31_on_https_a_cookie_without_the_prefix_is_ignored(browsers: Any) -> None:
    """A sibling subdomain can set ``flowengine_session`` for the parent domain, never ``__Host-…``."""
    transport = ScriptedTransport()
    client = fe.Client("cid", "secret")
    async with fe.AsyncEngine("podio", client=client, transport=transport) as engine:
        app = create_app(engine, secret_key=KEY, base_url="https://app.example.com")
        attacker, victim = browsers(app, "https://app.example.com"), browsers(app, "https://app.example.com")
        started = await attacker.get("/auth/podio")
        _, value, _ = _cookie(started)
        state = query_of(started.headers["location"])["state"]
        victim.cookies.set("flowengine_session", value, domain="example.com", path="/")  # planted, no prefix
        refused = await victim.get("/auth/podio/callback", params={"state": state, "code": "attackers-code"})
    assert refused.headers["location"] == "/auth/podio/error/session_mismatch"
    assert transport.sent == []
