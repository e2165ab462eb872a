"""The sandbox emulates any spec's provider from the spec itself (plugins/flowengine_sandbox/_emulator.py).

The login of every bundled provider against the sandbox; and, on a spec made for
it, the things the emulation must get right: answers in the spec's shape (nested
fields, no token type, milliseconds, absolute expiry), refresh and revocation,
kept callback parameters, and tenants that cannot redeem each other's codes.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import flowengine as fe
import httpx
import pytest

from flowengine_sandbox.plugin import SpecSandbox
from tests.cli.conftest import invoke
from tests.conftest import SandboxFixture
from tests.specs.test_providers import PROVIDERS


@pytest.mark.slow
@pytest.mark.parametrize("name", [*PROVIDERS, "slack-user"])
def test_login_sandbox_approve_exchanges_for_every_bundled_provider(
    name: str, sandbox: SandboxFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWENGINE_SANDBOX_URL", sandbox.server.url)
    result = invoke("login", name, "--sandbox", "--approve", "--store", "memory://")
    assert result.returncode == 0, result.stderr
    assert "exchanging -> exchanged" in result.stdout
    assert "Authorized as" in result.stdout


def test_login_sandbox_deny_is_denied(sandbox: SandboxFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWENGINE_SANDBOX_URL", sandbox.server.url)
    result = invoke("login", "zendesk", "--sandbox", "--deny", "--store", "memory://")
    assert result.returncode == 3, result.stderr
    assert "redirected -> denied" in result.stdout


SHAPED: dict[str, Any] = {
    "name": "shaped",
    "connection": {"tenant": {"pattern": "[a-z]+", "example": "acme"}},
    "endpoints": {
        "authorize": "https://{tenant}.shaped.example/authorize",
        "token": "https://api.shaped.example/{tenant}/token",
        "revoke": "https://api.shaped.example/{tenant}/revoke",
    },
    "pkce": True,
    "authorization": {
        "default_scopes": ["read", "write"],
        "scope_separator": ",",
        "params": {
            "client_id": "{client_id}",
            "redirect_uri": "{redirect_uri}",
            "scope": "{scope}",
            "state": "{state}",
            "code_challenge": "{code_challenge}",
            "code_challenge_method": "{code_challenge_method}",
        },
    },
    "callback": {"keep": {"region": {"param": "data-region", "pattern": "eu|us"}}},
    "grants": {
        "authorization_code": {
            "encoding": "json",
            "client_auth": "basic",
            "params": {
                "code": "{code}",
                "redirect_uri": "{redirect_uri}",
                "code_verifier": "{code_verifier}",
            },
        },
        "refresh_token": {
            "client_auth": "basic",
            "params": {
                "grant_type": "refresh_token",
                "refresh_token": "{refresh_token}",
                "region": "{region}",
            },
        },
    },
    "revocation": {"endpoint": "revoke", "headers": {"Authorization": "Bearer {token}"}, "params": {}},
    "token": {
        "access_token": "data.token.value",
        "refresh_token": "data.token.refresh",
        "expires_in": "data.token.ttl_ms",
        "expires_in_unit": "milliseconds",
        "scope": "data.granted",
        "default_token_type": "bearer",
        "account": {"id": "data.user.id", "default_type": "user"},
    },
}


def shaped(**changes: Any) -> fe.FlowSpec:
    data = copy.deepcopy(SHAPED)
    data["token"].update(changes)
    return fe.load_spec(data)


async def _consent(url: str | None) -> str:
    """Play the person on the emulated consent page, as a browser does: GET it, POST Grant."""
    assert url is not None
    async with httpx.AsyncClient(trust_env=False) as http:
        page = await http.get(url)
        assert page.status_code == 200 and "Grant" in page.text
        fields = dict(parse_qsl(urlsplit(url).query))
        answer = await http.post(url.split("?")[0], data={**fields, "decision": "grant"})
    assert answer.status_code == 302
    return answer.headers["location"]


@pytest.mark.parametrize("rules", [{}, {"expires_at": "data.token.until", "expires_in_unit": "seconds"}])
async def test_an_emulated_provider_answers_in_the_specs_shape(
    sandbox: SandboxFixture, rules: dict[str, Any]
) -> None:
    spec = shaped(**rules)
    sandbox.settings.consent = "ask"
    with SpecSandbox(spec, sandbox.server.url, sandbox.settings) as box:
        async with fe.AsyncEngine(spec, client=box.client, endpoints=box.endpoints) as engine:
            flow = await engine.start(connection={"tenant": "acme"})
            assert "/_e/shaped/authorize/acme.shaped.example/authorize?" in (flow.authorization_url or "")
            done = await engine.callback(await _consent(flow.authorization_url))
            assert done.outcome == "granted", done.error
            assert done.kept == {"region": "us"}  # a value its pattern accepts
            token = await engine.token_for(done)
            assert token is not None
            assert (str(token.account), token.scope, token.token_type) == (
                "user:1001",
                "read,write",
                "bearer",
            )
            assert token.expires_at is not None and token.expires_at > engine.clock() + 28_000
            fresh = await engine.refresh(token)
            assert fresh.access_token != token.access_token and fresh.key == token.key
            assert sandbox.token_requests()[-1].fields["region"] == "us"
            await engine.revoke(fresh)
            assert sandbox.token_requests()[-1].grant_type == "revocation"
            with pytest.raises(fe.InvalidGrantError):
                await engine.refresh(fresh)  # the revoked refresh token took its family with it


async def test_a_code_of_one_tenant_is_refused_at_another(sandbox: SandboxFixture) -> None:
    spec = shaped()
    sandbox.settings.consent = "approve"
    with SpecSandbox(spec, sandbox.server.url, sandbox.settings) as box:
        acme = await fe.AsyncEngine(spec, client=box.client, endpoints=box.endpoints).start(
            connection={"tenant": "acme"}
        )
        async with httpx.AsyncClient(trust_env=False) as http:
            location = (await http.get(acme.authorization_url or "")).headers["location"]
        code = dict(parse_qsl(urlsplit(location).query))["code"]
        token_url = box.endpoints["token"].replace("{tenant}", "beta")
        async with httpx.AsyncClient(trust_env=False, auth=("sandbox-client", "sandbox-secret")) as http:
            answer = await http.post(token_url, json={"code": code, "redirect_uri": acme.redirect_uri})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert "another tenant" in answer.json()["error_description"]


async def test_a_running_sandbox_learns_a_spec_from_a_file(sandbox: SandboxFixture) -> None:
    spec = fe.load_spec("figma")
    with fe.open_sandbox(spec, sandbox.server.url) as box:
        assert box.endpoints["refresh"].startswith(f"{sandbox.server.url}/_e/figma/refresh/api.figma.com/")
    assert "figma" in sandbox.server.app.state.sandbox_specs


def test_a_bad_spec_document_is_refused_by_the_sandbox(sandbox: SandboxFixture) -> None:
    answer = httpx.post(f"{sandbox.server.url}/_sandbox/specs", json={"name": "x"}, trust_env=False)
    assert answer.status_code == 400
    assert "required key missing" in answer.json()["error_description"]
