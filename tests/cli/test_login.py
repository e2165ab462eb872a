"""`flowengine login SPEC --sandbox`, run as a person runs it: the installed script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from tests.conftest import SandboxFixture

SECRET_LIKE = re.compile(r"[A-Za-z0-9_-]{32,}")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from flowengine.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_login_sandbox_approve_starts_its_own_sandbox_and_exits_0() -> None:
    result = run("login", "podio", "--sandbox", "--approve")
    assert result.returncode == 0, result.stderr
    assert "redirected -> authorized" in result.stdout
    assert "authorized -> exchanged" in result.stdout
    assert re.search(r"Authorized as user:1001; token sha256:[0-9a-f]{12}", result.stdout)
    assert not SECRET_LIKE.search(result.stdout + result.stderr)


def test_sec13_login_output_holds_no_code_or_token(sandbox: SandboxFixture) -> None:
    result = run("login", "podio", "--sandbox", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url})
    assert result.returncode == 0, result.stderr
    [request] = sandbox.token_requests()
    assert request.fields["code"] not in result.stdout + result.stderr
    assert sandbox.settings.clients["sandbox-client"].client_secret not in result.stdout + result.stderr


def test_login_sandbox_deny_exits_3_with_the_description(sandbox: SandboxFixture) -> None:
    result = run("login", "podio", "--sandbox", "--deny", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url})
    assert result.returncode == 3
    assert "The user denied your request." in result.stdout
    assert sandbox.token_requests() == []


def test_login_json_prints_one_document_without_secrets(sandbox: SandboxFixture) -> None:
    result = run("login", "podio", "--sandbox", "--json", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["state"] == "exchanged"
    assert document["account"] == {"type": "user", "id": 1001}
    assert [h["dest"] for h in document["history"]] == ["redirected", "authorized", "exchanged"]
    assert not {"code", "code_verifier", "state_hash", "access_token"} & set(document)


def test_login_failure_exits_4(sandbox: SandboxFixture) -> None:
    registered = sandbox.settings.clients["sandbox-client"]
    sandbox.settings.clients["sandbox-client"] = attrs.evolve(registered, client_secret="rotated")
    result = run("login", "podio", "--sandbox", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url})
    assert result.returncode == 4
    assert "invalid_client" in result.stdout


def test_login_without_sandbox_says_what_is_missing() -> None:
    result = run("login", "podio")
    assert result.returncode == 2
    assert "--sandbox" in result.stderr


def test_login_with_an_invalid_spec_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nendpoints: {}\n")
    result = run("login", str(bad), "--sandbox")
    assert result.returncode == 2
    assert f"{bad}: $: required key missing" in result.stderr or "required" in result.stderr


@pytest.mark.parametrize(
    "args", [["--help"], ["login", "--help"], ["spec", "--help"], ["sandbox", "serve", "--help"]]
)
def test_help_has_an_example(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 0
    assert "flowengine" in result.stdout
