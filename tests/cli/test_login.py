"""`flowengine login SPEC --sandbox`, run as a person runs it: the installed script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import click
import pytest

from tests.cli.conftest import invoke
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


@pytest.mark.slow
def test_login_sandbox_approve_starts_its_own_sandbox_and_exits_0() -> None:
    result = run("login", "podio", "--sandbox", "--approve")
    assert result.returncode == 0, result.stderr
    assert "redirected -> authorized" in result.stdout
    assert "authorized -> exchanging" in result.stdout
    assert "exchanging -> exchanged" in result.stdout
    assert re.search(r"Authorized as user:1001; token sha256:[0-9a-f]{12}", result.stdout)
    assert not SECRET_LIKE.search(result.stdout + result.stderr)


@pytest.mark.slow
def test_sec13_login_output_holds_no_code_or_token(sandbox: SandboxFixture) -> None:
    result = run("login", "podio", "--sandbox", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url})
    assert result.returncode == 0, result.stderr
    [request] = sandbox.token_requests()
    assert request.fields["code"] not in result.stdout + result.stderr
    assert sandbox.settings.clients["sandbox-client"].client_secret not in result.stdout + result.stderr


def test_login_sandbox_deny_exits_3_with_the_description(sandbox: SandboxFixture) -> None:
    result = invoke(
        "login", "podio", "--sandbox", "--deny", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    )
    assert result.returncode == 3
    assert "Flow denied: access_denied: The user denied your request." in result.stdout
    assert sandbox.token_requests() == []


def test_login_json_prints_one_document_without_secrets(sandbox: SandboxFixture) -> None:
    result = invoke(
        "login", "podio", "--sandbox", "--json", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["state"], document["outcome"]) == ("exchanged", "granted")
    assert document["account"] == {"type": "user", "id": 1001}
    assert [h["dest"] for h in document["history"]] == ["redirected", "authorized", "exchanging", "exchanged"]
    assert not {"code", "code_verifier", "state_hash", "access_token"} & set(document)


def test_login_failure_exits_4(sandbox: SandboxFixture) -> None:
    registered = sandbox.settings.clients["sandbox-client"]
    sandbox.settings.clients["sandbox-client"] = attrs.evolve(registered, client_secret="rotated")
    result = invoke("login", "podio", "--sandbox", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url})
    assert result.returncode == 4
    assert "invalid_client" in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--sandbox", "--port", "8000"], "--port applies when a person answers"),
        (["--sandbox", "--loopback", "--deny"], "--approve/--deny apply only to --sandbox without"),
        (["--sandbox", "--paste", "--client-id", "x"], "--sandbox uses the sandbox's own client"),
        (["--sandbox", "--loopback", "--timeout", "soon"], "not a duration"),
        (
            [
                "--client-id",
                "x",
                "--client-secret",
                "y",
                "--redirect-uri",
                "https://x.example/cb",
                "--loopback",
            ],
            "use --paste for a redirect URI on another host",
        ),
    ],
)
def test_login_options_that_do_not_go_together_exit_2(args: list[str], says: str) -> None:
    result = invoke("login", "podio", *args)
    assert result.returncode == 2
    assert says in result.stderr


def test_login_with_an_invalid_spec_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nendpoints: {}\n")
    result = invoke("login", str(bad), "--sandbox")
    assert result.returncode == 2
    assert f"{bad}: $: required key missing" in result.stderr or "required" in result.stderr


def test_every_terminal_command_has_help_with_an_example() -> None:
    """login, flows, tokens, token and spec (other plugins' commands are theirs to document)."""
    from click.testing import CliRunner
    from flowengine import _plugins as plugins
    from flowengine.cli import cli

    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    ours = ("login", "flows", "tokens", "token", "spec")
    paths: list[list[str]] = [[], *([name] for name in ours)]
    paths += [
        [name, sub]
        for name in ours
        if isinstance(group := cli.commands[name], click.Group)
        for sub in group.commands
    ]
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        command = cli
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        if not isinstance(command, click.Group):
            assert "flowengine " in result.stdout.partition("Example")[2], path


def test_a_presenter_plugin_shows_the_login_steps_in_place_of_the_terminal(sandbox: SandboxFixture) -> None:
    """``flowengine_present`` is a real seam: the terminal's presenter is only the fallback."""
    from collections.abc import Mapping
    from typing import Any

    from flowengine import Flow, get_plugin_manager, hookimpl

    shown: list[tuple[str, str, str | None]] = []

    class QrPresenter:
        @hookimpl
        def flowengine_present(self, flow: Flow, step: str, detail: Mapping[str, Any]) -> bool | None:
            if step not in ("authorize", "result"):
                return None
            shown.append((step, flow.state, detail.get("where")))
            return True

    pm = get_plugin_manager()
    presenter = QrPresenter()
    pm.register(presenter, name="test-qr-presenter")
    try:
        result = invoke("login", "podio", "--sandbox", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url})
    finally:
        pm.unregister(presenter)
    assert result.returncode == 0, result.stderr
    assert shown == [
        ("authorize", "redirected", f"{sandbox.server.url}/oauth/authorize"),
        ("result", "exchanged", None),
    ]
    assert "Authorizing at" not in result.stdout and "Authorized as" not in result.stdout
    assert "redirected -> authorized" in result.stdout  # the terminal still follows the transitions
