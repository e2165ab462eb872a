"""``flowengine web serve``: its usage errors, and one whole flow against the real process."""

from __future__ import annotations

import re

import httpx
import pytest
from click.testing import CliRunner
from flowengine import _plugins as plugins
from flowengine.cli import cli

from flowengine_sandbox.consent import consent
from tests.conftest import SandboxFixture
from tests.web.conftest import ServeProcess


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    return CliRunner()


def test_web_serve_is_a_command(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["web", "serve", "--help"])
    assert result.exit_code == 0
    for option in ("--spec", "--store", "--port", "--sandbox", "--base-url"):
        assert option in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Missing option '--spec'"),
        (["--spec", "podio"], "give --client-id"),
        (["--spec", "nosuch", "--sandbox"], "nosuch"),
        (["--spec", "podio", "--sandbox", "--store", "nosuch://x"], "store_unsupported"),
        (["--spec", "podio", "--spec", "podio", "--sandbox", "--store", "memory://"], "given twice"),
        (["--spec", "podio", "--sandbox", "--store", "memory://", "--operator"], "credentials_missing"),
    ],
)
def test_web_serve_usage_errors_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(
        cli, ["web", "serve", "--port", "0", *args], env={"FLOWENGINE_WEB_SECRET": "x" * 32}
    )
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.slow
async def test_web_serve_with_its_own_sandbox_runs_a_whole_flow() -> None:
    server = ServeProcess(
        "--spec", "podio", "--store", "memory://", "--port", "0", "--sandbox", "--scope", "user:read"
    )
    try:
        url = server.wait_url()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        async with httpx.AsyncClient(base_url=url) as browser:
            assert "Try to authorize" in (await browser.get("/")).text
            started = await browser.get("/auth/podio")
            assert started.status_code == 302
            # The sandbox started beside the app shows its consent page; Grant it.
            callback = await consent(browser, started.headers["location"], approve=True)
            assert callback.startswith(f"{url}/auth/podio/callback?")
            first = await browser.get(callback)
            assert first.status_code == 303
            page = await browser.get(first.headers["location"])
            assert "<h1>Authorized</h1>" in page.text and "<code>user:read</code>" in page.text
    finally:
        status = server.stop()
    assert status == 0
    output = "".join(server.stdout)
    assert "store: memory (this process only)" in output
    assert "podio sandbox: http://127.0.0.1:" in output
    errors = server.stderr
    assert "FLOWENGINE_WEB_SECRET is not set" in errors  # warned: a random key, one worker only
    assert "/auth/podio/callback" not in errors and "GET /" not in errors + output  # no access log


@pytest.mark.slow
def test_web_serve_uses_a_running_sandbox(sandbox: SandboxFixture) -> None:
    server = ServeProcess(
        "--spec",
        "podio",
        "--store",
        "memory://",
        "--port",
        "0",
        "--sandbox",
        env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_WEB_SECRET": "s" * 32},
    )
    try:
        server.wait_url()
    finally:
        assert server.stop() == 0
    assert f"podio sandbox: {sandbox.server.url}" in "".join(server.stdout)
    assert "not set" not in server.stderr


@pytest.mark.slow
def test_web_serve_operator_serves_the_page_to_whoever_has_the_secret(sandbox: SandboxFixture) -> None:
    secret = "the-operator-secret-0123456789"
    server = ServeProcess(
        "--spec",
        "podio",
        "--store",
        "memory://",
        "--port",
        "0",
        "--sandbox",
        "--operator",
        env={
            "FLOWENGINE_SANDBOX_URL": sandbox.server.url,
            "FLOWENGINE_WEB_SECRET": "s" * 32,
            "FLOWENGINE_OPERATOR_SECRET": secret,
        },
    )
    try:
        url = server.wait_url()
        with httpx.Client(base_url=url) as browser:
            assert browser.get("/operator").status_code == 403
            assert browser.post("/operator/sign-in", data={"secret": secret}).status_code == 303
            page = browser.get("/operator")
            assert page.status_code == 200 and 'data-spec="podio"' in page.text
    finally:
        assert server.stop() == 0
    output = "".join(server.stdout) + server.stderr
    assert f"operator page: {url}/operator (sign in with FLOWENGINE_OPERATOR_SECRET)" in output
    assert secret not in output  # never printed nor logged
