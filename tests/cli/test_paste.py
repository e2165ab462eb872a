"""Paste mode: the authorization URL out, the address the browser ended on back in.

The end-to-end test drives a real terminal: tmux runs the command, the test reads
the pane, answers the sandbox's consent page for the printed URL, and pastes the
callback URL with send-keys, as a person copying from the address bar would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flowengine import AsyncEngine, Client, load_spec

from flowengine_cli import callback_problem
from tests.cli.conftest import AUTHORIZE_URL, Running
from tests.conftest import SandboxFixture
from tests.support.terminal import Terminal, flowengine_command, needs_tmux

# Slow lane: a real terminal (tmux).
pytestmark = pytest.mark.slow

SANDBOX_CALLBACK = "http://127.0.0.1/flowengine/callback"


@needs_tmux
async def test_paste_mode_in_a_real_terminal(
    sandbox: SandboxFixture, env: dict[str, str], terminal: list[Terminal]
) -> None:
    term = Terminal(
        flowengine_command("login", "podio", "--sandbox", "--paste", "--no-browser"),
        env,
    )
    terminal.append(term)
    term.wait_for(r"Callback URL: $|Callback URL: \n")
    url = AUTHORIZE_URL.search(term.screen())
    assert url is not None
    assert "Copy that whole address from the address bar" in term.screen()

    # A mistake first: the authorization URL itself is not where the browser lands.
    term.type(url[0])
    term.wait_for(r"that is the authorization URL itself")
    callback = await sandbox.consent(url[0], approve=True)
    assert callback.startswith(SANDBOX_CALLBACK + "?")
    term.type(callback)
    term.wait_for(r"exit=\d+")

    screen = term.screen()
    assert "exit=0" in screen
    assert "redirected -> authorized" in screen
    assert "exchanging -> exchanged" in screen
    assert re.search(r"Authorized as user:1001; token sha256:[0-9a-f]{12}", screen)
    assert len(sandbox.token_requests()) == 1


@needs_tmux
def test_the_client_secret_prompt_does_not_echo(
    sandbox: SandboxFixture, env: dict[str, str], terminal: list[Terminal], tmp_path: Path
) -> None:
    term = Terminal(
        flowengine_command(
            "login", "podio", "--client-id", "my-client", "--paste", "--no-browser", "--timeout", "2s"
        ),
        {**env, "XDG_CONFIG_HOME": str(tmp_path)},
    )
    terminal.append(term)
    term.wait_for(r"podio client secret \(not shown\): ")
    term.type("s3cret-typed-here")
    term.wait_for(r"exit=\d+")
    screen = term.screen()
    assert "s3cret-typed-here" not in screen
    # No redirect URI anywhere: paste mode says what it needs (after taking the secret).
    assert "paste mode needs the redirect URI registered with the provider" in screen
    assert "exit=2" in screen


def test_paste_from_a_pipe_then_end_of_input_exits_4(env: dict[str, str], running: list[Running]) -> None:
    login = Running("login", "podio", "--sandbox", "--paste", "--no-browser", env=env)
    running.append(login)
    login.wait_for(AUTHORIZE_URL)
    assert login.process.stdin is not None
    login.process.stdin.write("https://example.com/not/it?code=x&state=y\n")
    login.process.stdin.close()
    code, out, err = login.finish()
    assert code == 4
    assert f"that address is not on the redirect URI {SANDBOX_CALLBACK}" in out
    assert "Error: paste_ended: input ended before a callback URL was pasted; no token was stored" in err


def test_paste_timeout_exits_5(sandbox: SandboxFixture, env: dict[str, str], running: list[Running]) -> None:
    login = Running("login", "podio", "--sandbox", "--paste", "--no-browser", "--timeout", "1s", env=env)
    running.append(login)
    code, _out, err = login.finish()
    assert code == 5
    assert "Error: login_timeout: timed out after 1s" in err
    assert sandbox.token_requests() == []


async def test_callback_problem_names_what_is_wrong(sandbox: SandboxFixture) -> None:
    spec = load_spec("podio")
    client = Client("sandbox-client", "sandbox-secret", redirect_uri=SANDBOX_CALLBACK)
    async with AsyncEngine(spec, client=client, endpoints=sandbox.endpoints) as engine:
        flow = await engine.start()
        other = await engine.start()
    assert flow.authorization_url is not None and other.authorization_url is not None
    state = flow.authorization_url.rsplit("state=", 1)[1]
    other_state = other.authorization_url.rsplit("state=", 1)[1]

    def problem(text: str) -> str | None:
        return callback_problem(spec, flow, SANDBOX_CALLBACK, text)

    assert problem(f"{SANDBOX_CALLBACK}?code=c&state={state}") is None
    assert problem(f"code=c&state={state}") is None  # the query alone will do
    assert "authorization URL itself" in (problem(flow.authorization_url) or "")
    assert "not on the redirect URI" in (
        problem(f"https://evil.example/flowengine/callback?state={state}") or ""
    )
    assert "not on the redirect URI" in (
        problem(f"http://127.0.0.1:81/flowengine/callback?state={state}") or ""
    )
    assert "no 'state' parameter" in (problem(f"{SANDBOX_CALLBACK}?code=c") or "")
    assert "another login" in (problem(f"{SANDBOX_CALLBACK}?code=c&state={other_state}") or "")
    assert "percent-escapes" in (problem(f"{SANDBOX_CALLBACK}?code=%ff&state={state}") or "")
