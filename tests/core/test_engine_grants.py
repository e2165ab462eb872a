"""Grant-only specs: Podio's app and password grants against the sandbox."""

from __future__ import annotations

import flowengine as fe
import pytest

from tests.conftest import SandboxFixture


async def _engine(name: str, sandbox: SandboxFixture) -> fe.AsyncEngine:
    spec = fe.load_spec(name)
    endpoints = {"token": sandbox.endpoints["token"]}
    return fe.AsyncEngine(spec, client=sandbox.client, endpoints=endpoints)


async def test_app_grant_stores_a_token_under_the_apps_ref(sandbox: SandboxFixture) -> None:
    async with await _engine("podio-app", sandbox) as engine:
        token = await engine.grant("app", {"app_id": "2002", "app_token": "sandbox-app-token"})
        assert token.account == fe.AccountRef("app", 2002)
        assert token.key == "podio-app:app:2002"
        assert await engine.get_token(token.key) == token
        fresh = await engine.refresh(token)
    assert fresh.access_token != token.access_token
    [app, refresh] = sandbox.token_requests()
    assert app.grant_type == "app"
    assert set(app.fields) == {"grant_type", "client_id", "client_secret", "app_id", "app_token"}
    assert refresh.grant_type == "refresh_token"


async def test_password_grant(sandbox: SandboxFixture) -> None:
    async with await _engine("podio-password", sandbox) as engine:
        token = await engine.grant(
            "password", {"username": "user@example.com", "password": "sandbox-password"}
        )
    assert token.account == fe.AccountRef("user", 1001)


async def test_a_wrong_app_token_is_invalid_grant(sandbox: SandboxFixture) -> None:
    async with await _engine("podio-app", sandbox) as engine:
        with pytest.raises(fe.ProviderError) as caught:
            await engine.grant("app", {"app_id": "2002", "app_token": "wrong"})
        assert caught.value.code == "invalid_grant"
        assert await engine.tokens() == []


async def test_grant_refuses_undeclared_inputs_and_the_code_grant(sandbox: SandboxFixture) -> None:
    async with await _engine("podio-app", sandbox) as engine:
        with pytest.raises(fe.ConfigError, match="declares no input"):
            await engine.grant("app", {"app_id": "2002", "app_secret": "x"})
        with pytest.raises(fe.ConfigError) as unknown:
            await engine.grant("password", {})
        assert unknown.value.code == "grant_unsupported"
    podio = fe.AsyncEngine("podio", client=sandbox.client, endpoints=sandbox.endpoints)
    with pytest.raises(fe.ConfigError, match="needs a person"):
        await podio.grant("authorization_code", {})


async def test_a_grant_only_spec_has_no_flows(sandbox: SandboxFixture) -> None:
    async with await _engine("podio-app", sandbox) as engine:
        for call in (engine.start(), engine.callback("https://x.example/cb?state=s&code=c")):
            with pytest.raises(fe.ConfigError) as caught:
                await call
            assert caught.value.code == "grant_only_spec"
    assert sandbox.token_requests() == []


def test_grant_only_specs_validate_and_have_no_graph() -> None:
    from click.testing import CliRunner
    from flowengine.cli import cli

    assert CliRunner().invoke(cli, ["spec", "validate", "podio-app", "podio-password"]).exit_code == 0
    graph = CliRunner().invoke(cli, ["spec", "graph", "podio-app"])
    assert graph.exit_code == 2
    assert "grant-only" in graph.output
