"""SECURITY.md 36: whoever chooses the host gets the client's credentials, so no request chooses it.

A connection value in an endpoint's host or in the issuer (the generic ``oidc`` spec's
``issuer``, GitLab's ``host``) decides where the code and the client secret are sent. The web
frontend takes such a value from configuration only, and a query never changes a configured
value; a host taken from a callback must be one of the spec's allow-list; no value adds a
``.`` or ``..`` path segment. Every case is refused before anything is sent.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flowengine as fe
import httpx
import pytest
from click.testing import CliRunner
from flowengine import _plugins as plugins
from flowengine.cli import cli
from flowengine.testing import MockTransport, json_response

from flowengine_web import create_app

SECRET_KEY = "k" * 32
ISSUER = "https://id.example.com"
CLIENT = fe.Client("real-client", "REAL-CLIENT-SECRET", "https://app.example/cb")
#: Every shipped spec with connection variables and an authorization request.
SPECS = sorted(
    spec.name
    for spec in map(fe.load_spec, (Path(__file__).resolve().parents[2] / "specs").glob("*.yaml"))
    if spec.connection and spec.authorization is not None
)
HOSTILE = [
    "https://evil.example",
    "evil.example",
    "evil.example:443",
    "evil.example/x",
    "127.0.0.1",
    "a.evil.example",
]


class Provider:
    """Answers discovery for whatever issuer it is asked, and records every request."""

    def __init__(self) -> None:
        self.sent: list[fe.HttpRequest] = []
        self.transport = MockTransport(self.answer)

    def answer(self, request: fe.HttpRequest) -> fe.HttpResponse:
        self.sent.append(request)
        issuer = request.url.removesuffix("/.well-known/openid-configuration")
        document = {"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize"}
        document |= {"token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks"}
        return json_response({**document, "response_types_supported": ["code"]})

    def hosts(self) -> set[str]:
        return {urlsplit(r.url).hostname or "" for r in self.sent}


async def _get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://app.example") as browser:
        return await browser.get(path, headers={"accept": "application/json"})


# --- the web frontend: a start URL never chooses the provider's host ---------------------------


@pytest.mark.parametrize(
    "evil", ["https://evil.example", "https://127.0.0.1:9443", "https://id.example.com.evil"]
)
async def test_sec36_a_start_url_cannot_choose_the_oidc_issuer_the_deployment_pinned(evil: str) -> None:
    provider = Provider()
    async with fe.AsyncEngine("oidc", client=CLIENT, transport=provider.transport) as engine:
        app = create_app(engine, secret_key=SECRET_KEY, pinned={"oidc": {"issuer": ISSUER}})
        refused = await _get(app, f"/auth/oidc?issuer={evil}")
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "connection_pinned"
        assert provider.sent == [] and await engine.flows() == []
        started = await _get(app, "/auth/oidc")
        assert started.status_code == 200, started.text
        assert started.json()["authorization_url"].startswith(f"{ISSUER}/authorize?")
        same = await _get(app, f"/auth/oidc?issuer={ISSUER}")  # repeating the configured value is no choice
        assert same.status_code == 200
    assert provider.hosts() == {"id.example.com"}


def test_sec36_create_app_refuses_a_host_value_nobody_configured() -> None:
    engine = fe.AsyncEngine("oidc", client=CLIENT, transport=Provider().transport)
    with pytest.raises(fe.ConfigError) as caught:
        create_app(engine, secret_key=SECRET_KEY)
    assert caught.value.code == "connection_pinned"
    assert "issuer" in caught.value.message


@pytest.mark.parametrize("spec", SPECS)
async def test_sec36_no_shipped_spec_lets_a_start_url_send_the_flow_to_another_host(spec: str) -> None:
    loaded = fe.load_spec(spec)
    provider = Provider()
    examples = {n: r.example or r.default or "acme" for n, r in loaded.connection.items()}
    pinned = {n: examples[n] for n in fe.pinned_connection(loaded)}
    async with fe.AsyncEngine(loaded, client=CLIENT, transport=provider.transport) as engine:
        app = create_app(engine, secret_key=SECRET_KEY, pinned={spec: pinned})
        for name in loaded.connection:
            for evil in HOSTILE:
                answer = await _get(app, f"/auth/{spec}?{httpx.QueryParams({**examples, name: evil})}")
                if answer.status_code == 200:
                    url = answer.json()["authorization_url"]
                    host = urlsplit(url).hostname or ""
                    assert "evil" not in host and host != "127.0.0.1", (name, evil, url)
                else:
                    assert answer.json()["error"]["code"] in ("connection_pinned", "connection_invalid")
    assert not any("evil" in h or h == "127.0.0.1" for h in provider.hosts())


async def test_sec36_gitlab_serves_its_default_host_and_refuses_another_from_the_query() -> None:
    async with fe.AsyncEngine("gitlab", client=CLIENT, transport=Provider().transport) as engine:
        app = create_app(engine, secret_key=SECRET_KEY)
        refused = await _get(app, "/auth/gitlab?host=evil.example")
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "connection_pinned")
        started = await _get(app, "/auth/gitlab")
        assert started.json()["authorization_url"].startswith("https://gitlab.com/oauth/authorize?")


async def test_sec36_a_query_never_changes_a_value_the_deployment_pinned() -> None:
    async with fe.AsyncEngine("zendesk", client=CLIENT, transport=Provider().transport) as engine:
        app = create_app(engine, secret_key=SECRET_KEY, pinned={"zendesk": {"subdomain": "acme"}})
        refused = await _get(app, "/auth/zendesk?subdomain=other")
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "connection_pinned")
        started = await _get(app, "/auth/zendesk")
        assert urlsplit(started.json()["authorization_url"]).hostname == "acme.zendesk.com"
        assert await engine.flows() != []


# --- web serve: --connection pins, a query cannot override it ----------------------------------


class _Served:
    app: Any = None


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> _Served:
    import flowengine_web._server as server

    box = _Served()

    def keep(app: Any, sock: Any, announce: Any) -> None:
        box.app = app

    monkeypatch.setattr(server, "serve_forever", keep)
    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    return box


def _serve(*args: str) -> Any:
    env = {"FLOWENGINE_WEB_SECRET": SECRET_KEY, "FLOWENGINE_CLIENT_SECRET": "REAL-CLIENT-SECRET"}
    base = ["web", "serve", "--port", "0", "--store", "memory://", "--client-id", "real-client"]
    return CliRunner().invoke(cli, [*base, "--base-url", "https://app.example", *args], env=env)


def test_sec36_web_serve_will_not_serve_an_issuer_nobody_configured(served: _Served) -> None:
    result = _serve("--spec", "oidc")
    assert result.exit_code == 2, result.output
    assert "connection_pinned" in result.output and "--connection issuer=" in result.output
    assert served.app is None


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (("--spec", "oidc", "--connection", f"issuer={ISSUER}"), "/auth/oidc?issuer=https://evil.example"),
        (("--spec", "gitlab"), "/auth/gitlab?host=evil.example"),
        (("--spec", "zendesk", "--connection", "subdomain=acme"), "/auth/zendesk?subdomain=other"),
    ],
)
async def test_sec36_web_serve_refuses_a_query_that_would_change_the_host(
    served: _Served, args: tuple[str, ...], path: str
) -> None:
    result = _serve(*args)
    assert result.exit_code == 0, result.output
    answer = await _get(served.app, path)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "connection_pinned")


# --- a host from a callback is an allow-list's, or the spec is invalid ------------------------


def _zoho(pattern: str | None, endpoint: str = "https://{dc}/oauth/v2/token") -> Mapping[str, Any]:
    keep: dict[str, Any] = {"param": "accounts-server"} | ({"pattern": pattern} if pattern else {})
    return {
        "name": "zoho-like",
        "endpoints": {"authorize": "https://accounts.zoho.com/oauth/v2/auth", "token": endpoint},
        "callback": {"keep": {"dc": keep}},
        "authorization": {
            "params": {"client_id": "{client_id}", "state": "{state}", "response_type": "code"}
        },
        "grants": {"authorization_code": {"params": {"grant_type": "authorization_code", "code": "{code}"}}},
    }


@pytest.mark.parametrize(
    "pattern",
    [
        None,  # the default: any URL-safe value
        r".+\.zoho\.com",  # anything at all before the suffix: evil.example/x.zoho.com
        r"[a-z.]+zoho\.com",  # evilzoho.com
        r"[a-z0-9-]+\.co\.uk",  # a public suffix, not a domain
        r"(?:https://)?([A-Za-z0-9.-]+)",
        r"accounts\.zoho\.com|[a-z.]+",
        r"[a-z]+\.zoho\.com(?::[0-9]+)?",
    ],
)
def test_sec36_a_spec_taking_a_host_from_the_callback_without_an_allow_list_is_invalid(
    pattern: str | None,
) -> None:
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(dict(_zoho(pattern)))
    [problem] = caught.value.problems
    assert problem.path == "$.callback.keep.dc" and "$.endpoints.token" in problem.message


@pytest.mark.parametrize(
    ("pattern", "endpoint"),
    [
        (r"https://(accounts\.zoho\.(?:com|eu|in|com\.au|jp))", "https://{dc}/oauth/v2/token"),
        (r"[a-z0-9-]+\.zoho\.com", "https://{dc}/oauth/v2/token"),
        (None, "https://{dc}.zoho.com/oauth/v2/token"),  # the spec's own text fixes the domain
    ],
)
async def test_sec36_an_allow_listed_callback_host_keeps_the_exchange_in_its_domain(
    pattern: str | None, endpoint: str
) -> None:
    provider = Provider()
    spec = fe.load_spec(dict(_zoho(pattern, endpoint)))
    hostile = [
        "evil.example",
        "https://evil.example",
        "evil.example/x.zoho.com",
        "evil.example#.zoho.com",
        "..",
    ]
    async with fe.AsyncEngine(spec, client=CLIENT, transport=provider.transport) as engine:
        for evil in [*hostile, "https://accounts.zoho.eu", "accounts.zoho.eu", "accounts.zoho.com"]:
            flow = await engine.start()
            state = dict(httpx.QueryParams(urlsplit(flow.authorization_url or "").query))["state"]
            with contextlib.suppress(fe.FlowError):  # refused, or sent within zoho.com
                await engine.callback({"state": state, "code": "c1", "accounts-server": evil})
    assert provider.sent, "an allowed host gets the exchange"
    assert all(h.endswith(".zoho.com") or h.endswith(".zoho.eu") for h in provider.hosts()), provider.hosts()


# --- no value makes a dot segment -------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["..", ".", "acme/../../other-tenant", "acme/./x", "acme/.."])
async def test_sec36_a_connection_value_never_adds_a_dot_segment(tenant: str) -> None:
    spec = fe.load_spec(
        {
            "name": "tenant-path",
            "connection": {"tenant": {"pattern": "[A-Za-z0-9._~/-]+"}},
            "endpoints": {
                "authorize": "https://login.example.com/{tenant}/authorize",
                "token": "https://login.example.com/{tenant}/token",
            },
            "authorization": {"params": {"client_id": "{client_id}", "state": "{state}"}},
            "grants": {"authorization_code": {"params": {"code": "{code}"}}},
        }
    )
    async with fe.AsyncEngine(spec, client=CLIENT, transport=Provider().transport) as engine:
        with pytest.raises(fe.ConfigError) as caught:
            await engine.start(connection={"tenant": tenant})
        assert caught.value.code == "connection_invalid"
        assert await engine.flows() == []
        fine = await engine.start(connection={"tenant": "acme/sub..x"})
        assert (fine.authorization_url or "").startswith("https://login.example.com/acme/sub..x/authorize?")


async def test_sec36_the_operator_pages_new_login_link_never_carries_a_host() -> None:
    async with fe.AsyncEngine("gitlab", client=CLIENT, transport=Provider().transport) as engine:
        dead = fe.Token(
            provider="gitlab",
            account=fe.AccountRef("user", "1"),
            access_token="ACCESS",
            token_type="bearer",
            obtained_at=1.0,
            dead=True,
            dead_at=2.0,
            connection={"host": "evil.example"},
        )
        await engine.store.put_token(dead)
        app = create_app(engine, secret_key=SECRET_KEY, operator=lambda request: True)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://app.example") as browser:
            page = (await browser.get("/operator")).text
        [link] = re.findall(r'<a href="([^"]*)"[^>]*>Start a new login</a>', page)
        assert link == "/auth/gitlab"
        started = await _get(app, html.unescape(link))
        assert started.json()["authorization_url"].startswith("https://gitlab.com/oauth/authorize?")
