"""`flowengine token header`: `curl -H "$(flowengine token header podio)"` against the sandbox."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys

import pytest

from tests.cli.conftest import ENTRY, cli_command, invoke
from tests.conftest import SandboxFixture

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is part of the machine")


def _curl_user_status(sandbox: SandboxFixture, env: dict[str, str], *header_args: str) -> str:
    """Run the documented shell line; return curl's `STATUS BODY`."""
    flowengine = " ".join([f"'{sys.executable}'", "-c", f'"{ENTRY}"', "token", "header", *header_args])
    script = f'curl -s -w " %{{http_code}}" -H "$({flowengine})" {sandbox.server.url}/user/status'
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    return done.stdout


@pytest.mark.slow  # curl running the command in a subprocess
@needs_curl
def test_curl_with_the_header_answers_200(sandbox: SandboxFixture, env: dict[str, str]) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    answer = _curl_user_status(sandbox, env, "podio")
    assert answer.endswith(" 200"), answer
    assert '"user_id":1001' in answer
    assert [r.grant_type for r in sandbox.token_requests()] == ["authorization_code"]  # no refresh needed


@pytest.mark.slow
@needs_curl
def test_a_token_about_to_expire_is_refreshed_first(sandbox: SandboxFixture, env: dict[str, str]) -> None:
    sandbox.settings.access_ttl = 60  # expires_at = now + 30 s (leeway): inside the 60 s default
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    answer = _curl_user_status(sandbox, env, "podio", "user:1001", "--sandbox")
    assert answer.endswith(" 200"), answer
    assert [r.grant_type for r in sandbox.token_requests()] == ["authorization_code", "refresh_token"]


def test_the_header_line_and_value(sandbox: SandboxFixture, env: dict[str, str]) -> None:
    invoke("login", "podio", "--sandbox", env=env)
    line = invoke("token", "header", "podio", env=env)
    assert line.returncode == 0, line.stderr
    scheme, _, token = line.stdout.strip().removeprefix("Authorization: ").partition(" ")
    assert (scheme, len(token)) == ("OAuth2", 128)  # Podio's scheme; its tokens are 128 characters
    assert invoke("token", "header", "podio", "1001", "--value-only", env=env).stdout == f"OAuth2 {token}\n"


def test_refresh_needed_without_credentials_names_the_variables(
    sandbox: SandboxFixture, env: dict[str, str]
) -> None:
    sandbox.settings.access_ttl = 60
    invoke("login", "podio", "--sandbox", env=env)
    result = invoke("token", "header", "podio", env=env)
    assert result.returncode == 2
    assert "FLOWENGINE_PODIO_CLIENT_SECRET" in result.stderr
    assert result.stdout == ""


def test_no_token_exits_4_and_an_unknown_account_too(env: dict[str, str]) -> None:
    result = invoke("token", "header", "podio", env=env)
    assert result.returncode == 4
    assert "flowengine login podio" in result.stderr
    invoke("login", "podio", "--sandbox", env=env)
    assert invoke("token", "header", "podio", "user:999", env=env).returncode == 4


@pytest.mark.slow  # the command on a real terminal
def test_the_token_is_not_printed_on_a_terminal(env: dict[str, str]) -> None:
    invoke("login", "podio", "--sandbox", env=env)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            cli_command("token", "header", "podio"),
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, **env},
            check=False,
        )
        os.close(follower)
        follower = -1
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert done.returncode == 2
    assert "--reveal" in done.stderr
    assert b"OAuth2" not in screen
