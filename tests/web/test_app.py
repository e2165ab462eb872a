"""The app as a host sees it: mounted under a prefix, in a sync TestClient, configured, imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import flowengine as fe
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from flowengine_web import create_app
from flowengine_web._http import wants_json
from tests.conftest import SandboxFixture
from tests.web.conftest import ORIGIN, SECRET, Browser


def _host_app(engine: fe.AsyncEngine) -> Starlette:
    async def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host's own page")

    return Starlette(
        routes=[Route("/", index), Mount("/oauth", app=create_app(engine, secret_key=SECRET), name="oauth")]
    )


async def test_mounted_under_a_prefix_every_url_and_the_cookie_stay_under_it(
    engine: fe.AsyncEngine, make_browser: object, sandbox: SandboxFixture
) -> None:
    browser: Browser = make_browser(_host_app(engine))  # type: ignore[operator]
    assert (await browser.get("/")).text == "the host's own page"
    home = await browser.get("/oauth/")
    assert 'href="/oauth/auth/podio"' in home.text
    started = await browser.get("/oauth/auth/podio")
    assert "Path=/oauth" in started.headers["set-cookie"]
    assert parse_qs(urlsplit(started.headers["location"]).query)["redirect_uri"] == [
        f"{ORIGIN}/oauth/auth/podio/callback"
    ]
    first, page = await browser.follow(await sandbox.consent(started.headers["location"]))
    assert first.headers["location"].startswith("/oauth/auth/podio/result/")
    assert "<h1>Authorized</h1>" in page.text and 'href="/oauth/"' in page.text
    refused = await browser.get("/oauth/auth/podio/callback?code=a&state=b")
    assert refused.headers["location"] == "/oauth/auth/podio/error/state_unknown"
    assert (await browser.get("/oauth/auth/nosuch")).status_code == 404


# Starlette 1.x would rather its TestClient ran on httpx2; the test is that it works at all.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_sync_starlette_testclient_drives_it(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    from starlette.testclient import TestClient

    engine = fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints)
    with TestClient(_host_app(engine), base_url=ORIGIN) as client:
        started = client.get("/oauth/auth/podio", follow_redirects=False)
        assert started.status_code == 302
        callback = client.portal.call(sandbox.consent, started.headers["location"])
        page = client.get(callback)  # TestClient follows the 303
        assert page.url.path.startswith("/oauth/auth/podio/result/")
        assert "<h1>Authorized</h1>" in page.text
        client.portal.call(engine.aclose)
    assert len(sandbox.token_requests()) == 1


@pytest.mark.slow
async def test_mounted_in_fastapi(engine: fe.AsyncEngine, make_browser: object) -> None:
    fastapi = pytest.importorskip("fastapi", reason="FastAPI is not a dependency; mounting needs only ASGI")
    host = fastapi.FastAPI()
    host.mount("/oauth", create_app(engine, secret_key=SECRET))
    browser: Browser = make_browser(host)  # type: ignore[operator]
    started = await browser.get("/oauth/auth/podio")
    _, page = await browser.follow(await browser.sandbox.consent(started.headers["location"]))
    assert "<h1>Authorized</h1>" in page.text


async def test_a_key_list_rotates_keys(engine: fe.AsyncEngine, make_browser: object) -> None:
    old, new = "old-secret-key-0123456789", "new-secret-key-0123456789"
    before: Browser = make_browser(create_app(engine, secret_key=old))  # type: ignore[operator]
    callback = await before.authorize()
    rotated: Browser = make_browser(create_app(engine, secret_key=[new, old]))  # type: ignore[operator]
    rotated.http.cookies.update(before.http.cookies)
    _, page = await rotated.follow(callback)
    assert "<h1>Authorized</h1>" in page.text
    dropped: Browser = make_browser(create_app(engine, secret_key=new))  # type: ignore[operator]
    dropped.http.cookies.update(before.http.cookies)
    first = await dropped.get(callback)
    assert first.headers["location"] == "/auth/podio/error/session_mismatch"


async def test_close_engines_closes_them_with_the_app(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    closed: list[str] = []

    class Engine(fe.AsyncEngine):
        async def aclose(self) -> None:
            closed.append(self.spec.name)
            await super().aclose()

    engine = Engine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints)
    app = create_app({"a": engine, "b": engine}, secret_key=SECRET, close_engines=True)
    async with app.router.lifespan_context(app):
        pass
    assert closed == ["podio"]  # once, though served under two names


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret_key": "short"}, "at least 16 bytes"),
        ({"secret_key": []}, "at least one key"),
        ({"secret_key": SECRET, "base_url": "ftp://x"}, "base_url"),
        ({"secret_key": SECRET, "base_url": "https://x/?a=1"}, "base_url"),
        ({"secret_key": SECRET, "scopes": {"nosuch": "x"}}, "unknown spec names: nosuch"),
        ({"secret_key": SECRET, "cookie_name": "a b"}, "cookie_name"),
    ],
)
def test_create_app_refuses_a_bad_configuration(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, options: dict[str, object], message: str
) -> None:
    engine = fe.AsyncEngine(podio_spec, client=sandbox.client)
    with pytest.raises(fe.ConfigError, match=message):
        create_app(engine, **options)  # type: ignore[arg-type]


def test_create_app_refuses_bad_engines(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    engine = fe.AsyncEngine(podio_spec, client=sandbox.client)
    with pytest.raises(fe.ConfigError, match="at least one engine"):
        create_app({}, secret_key=SECRET)
    with pytest.raises(fe.ConfigError, match="cannot be a URL segment"):
        create_app({"a/b": engine}, secret_key=SECRET)
    with (
        fe.Engine(podio_spec, client=sandbox.client) as sync,
        pytest.raises(fe.ConfigError, match=r"\.engine"),
    ):
        create_app({"podio": sync}, secret_key=SECRET)  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("accept", "json"),
    [
        ("", False),
        ("*/*", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("application/json", True),
        ("application/json, text/plain, */*", True),
        ("application/*", True),
        ("text/html;q=0.5, application/json;q=0.9", True),
        ("application/json;q=0, */*", False),
        ("application/json;q=bogus", False),
    ],
)
def test_json_is_chosen_only_when_preferred(accept: str, json: bool) -> None:
    scope = {"type": "http", "headers": [(b"accept", accept.encode())] if accept else []}
    assert wants_json(Request(scope)) is json


@pytest.mark.slow  # a fresh interpreter
def test_the_plugin_imports_neither_starlette_nor_uvicorn_until_used() -> None:
    code = (
        "import sys, click, flowengine_web; flowengine_web.flowengine_commands(cli=click.Group()); "
        "assert 'starlette' not in sys.modules and 'uvicorn' not in sys.modules, 'imported too early'; "
        "flowengine_web.create_app; assert 'starlette' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_the_web_server_serves_in_a_thread(engine: fe.AsyncEngine) -> None:
    from flowengine_web import WebServer

    with WebServer(create_app(engine, secret_key=SECRET)) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert "Try to authorize" in (await http.get("/")).text
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018


def test_the_server_socket_says_it_is_tcp_so_asyncio_turns_nagle_off() -> None:
    import socket

    from flowengine_web._server import bind

    # With proto 0 asyncio skips TCP_NODELAY, and each response with a body waited ~40 ms.
    with bind("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP


def test_every_public_name_imports_and_is_in_docs_web_md() -> None:
    import flowengine_web

    docs = (Path(__file__).resolve().parents[2] / "docs" / "web.md").read_text(encoding="utf-8")
    for name in flowengine_web.__all__:
        assert getattr(flowengine_web, name) is not None
        if name != "flowengine_commands":
            assert f"`{name}" in docs, f"docs/web.md does not mention {name}"
    with pytest.raises(AttributeError):
        flowengine_web.nosuch  # noqa: B018
