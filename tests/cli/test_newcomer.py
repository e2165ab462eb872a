"""What a newcomer meets on the command line (issue 17): run as they run it, status and message checked.

No traceback, no misleading message: every error is one ``Error: CODE: MESSAGE``
line on stderr that says what is wrong and what to do.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import flowengine as fe
import pytest

from tests.cli.conftest import Running, cli_command, invoke, local_spec, run
from tests.conftest import SandboxFixture

WAITING = re.compile(r"Waiting for the browser to come back to http://127\.0\.0\.1:\d+/callback")
ROOT = Path(__file__).resolve().parents[2]


def _one_error(stderr: str, code: str) -> str:
    """The single ``Error: CODE: …`` line of stderr (debug logging aside); fails on anything else."""
    lines = [line for line in stderr.splitlines() if not line.startswith(("DEBUG:", "INFO:"))]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"Error: {code}: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def not_a_sandbox() -> Iterator[str]:
    """An HTTP server that is not a sandbox: it answers every request with an HTML error page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _page(self) -> None:
            body = b"<!DOCTYPE HTML><html><body><h1>Error response</h1><p>Error code: 501</p></body></html>"
            self.send_response(501)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _page

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- tables --------------------------------------------------------------------------------


@pytest.mark.slow
def test_flows_list_in_a_pipe_keeps_every_cell_whole(env: dict[str, str]) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    assert invoke("login", "podio", "--sandbox", "--deny", env=env).returncode == 3
    table = run("flows", "list", env=env)  # stdout is a pipe, as in `flowengine flows list | less`
    assert table.returncode == 0, table.stderr
    [header, *lines] = table.stdout.splitlines()
    assert re.split(r"\s{2,}", header) == ["ID", "SPEC", "STATE", "CREATED", "ACCOUNT", "ERROR"]
    listed = json.loads(invoke("flows", "list", "--json", env=env).stdout)
    assert len(lines) == len(listed) == 2
    for line, flow in zip(lines, listed, strict=True):
        cells = re.split(r"\s{2,}", line)
        assert {flow["id"], "podio", flow["state"]} <= set(cells), line
        assert re.fullmatch(r"\d+s ago", cells[3]), line
        assert line == line.rstrip()
    assert re.split(r"\s{2,}", lines[1])[-1] == "access_denied"


# --- ports -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_busy_port_is_one_line_and_exit_2_for_sandbox_serve_and_web_serve() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        sandbox = run("sandbox", "serve", "--port", port)
        web = run(
            "web", "serve", "--spec", "podio", "--sandbox", "--store", "memory://", "--port", port,
            env={"FLOWENGINE_WEB_SECRET": "w" * 32},
        )  # fmt: skip
    assert sandbox.returncode == web.returncode == 2
    said = _one_error(sandbox.stderr, "port_in_use")
    assert said == _one_error(web.stderr, "port_in_use"), "the same words for the same mistake"
    assert f"port {port} on 127.0.0.1 is already in use" in said
    assert sandbox.stdout == web.stdout == ""


# --- credentials -----------------------------------------------------------------------------


def test_credential_messages_name_what_is_actually_missing(sandbox: SandboxFixture, tmp_path: Path) -> None:
    spec = str(local_spec(tmp_path, sandbox.server.url))
    secret_only = invoke("login", spec, "--no-browser", env={"FLOWENGINE_PODIO_CLIENT_SECRET": "s"})
    assert secret_only.returncode == 2
    said = _one_error(secret_only.stderr, "credentials_missing")
    assert "no client id for 'podio' (a secret was found in FLOWENGINE_PODIO_CLIENT_SECRET)" in said

    id_only = invoke("login", spec, "--no-browser", "--client-id", "my-app")
    assert id_only.returncode == 2
    said = _one_error(id_only.stderr, "credentials_missing")
    assert "no client secret for 'podio' (the client id 'my-app' comes from --client-id)" in said
    assert "pass --client-id" not in said, "the id was given: only the secret is missing"
    assert "FLOWENGINE_PODIO_CLIENT_SECRET" in said

    neither = invoke("login", spec, "--no-browser")
    said = _one_error(neither.stderr, "credentials_missing")
    assert "pass --client-id" in said and "--sandbox" in said


def test_a_sandbox_token_refreshed_without_sandbox_gets_the_hint(env: dict[str, str]) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    result = invoke("tokens", "refresh", "podio:user:1001", env=env)
    assert result.returncode == 2
    said = _one_error(result.stderr, "credentials_missing")
    assert "no client secret for 'podio' (the client id 'sandbox-client' comes from the stored token)" in said
    assert "podio:user:1001 was issued by the sandbox" in said and "add --sandbox" in said


def _ctrl_d_at_prompt(args: list[str], prompt: bytes, home: Path) -> tuple[int, str]:
    """Run the command on a pseudo-terminal, and answer ``prompt`` with Ctrl-D (end of input)."""
    controller, terminal = os.openpty()
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    with subprocess.Popen(
        cli_command(*args), stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        start_new_session=True,  # no controlling terminal: getpass reads the pseudo-terminal
    ) as process:  # fmt: skip
        os.close(terminal)
        assert process.stderr is not None
        seen, deadline = b"", time.monotonic() + 30
        while prompt not in seen:
            ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no prompt {prompt!r}; saw {seen!r}"
            chunk = os.read(process.stderr.fileno(), 1024)
            assert chunk, f"the command ended before its prompt; saw {seen!r}"
            seen += chunk
        os.write(controller, b"\x04")  # written once the prompt is up: getpass flushes earlier input
        _out, rest = process.communicate(timeout=60)
    os.close(controller)
    return process.returncode, (seen + rest).decode()


@pytest.mark.parametrize(
    ("flags", "prompt", "says"),
    [
        ([], b"podio client id: ", "no client credentials for 'podio'"),
        (["--client-id", "my-app"], b"podio client secret (not shown): ", "no client secret for 'podio'"),
    ],
)
def test_ctrl_d_at_a_credentials_prompt_exits_2_and_says_so(
    flags: list[str], prompt: bytes, says: str, tmp_path: Path
) -> None:
    code, stderr = _ctrl_d_at_prompt(["login", "podio", "--no-browser", *flags], prompt, tmp_path)
    assert code == 2
    said = _one_error(stderr.split(prompt.decode(), 1)[1].lstrip("\n"), "credentials_missing")
    assert says in said and "the prompt got end of input (Ctrl-D)" in said


def test_a_mistake_in_the_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "flowengine" / "config.toml"
    config.parent.mkdir()
    config.write_text('[podio]\nclient_secert = "x"\n', encoding="utf-8")
    result = invoke("login", "podio", "--no-browser", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert result.returncode == 2
    said = _one_error(result.stderr, "config_invalid")
    assert str(config) in said and "client_secert" in said


# --- the sandbox ------------------------------------------------------------------------------

TOKEN_COMMANDS = [
    ["tokens", "refresh", "podio:user:1001", "--sandbox"],
    ["token", "header", "podio", "--sandbox", "--min-validity", "9h"],
]


@pytest.mark.parametrize("command", TOKEN_COMMANDS, ids=["tokens refresh", "token header"])
def test_token_commands_say_when_no_sandbox_answers(
    command: list[str], env: dict[str, str], not_a_sandbox: str
) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    closed = f"http://127.0.0.1:{_free_port()}"
    result = invoke(*command, env={**env, "FLOWENGINE_SANDBOX_URL": closed})
    assert result.returncode == 2
    said = _one_error(result.stderr, "sandbox_unreachable")
    assert f"no sandbox answers at {closed}" in said and "flowengine sandbox serve" in said
    assert "ClientConnectorError" not in said and "ssl:default" not in said

    bare = closed.removeprefix("http://")
    said = _one_error(
        invoke(*command, env={**env, "FLOWENGINE_SANDBOX_URL": bare}).stderr, "sandbox_unreachable"
    )
    assert f"FLOWENGINE_SANDBOX_URL={bare!r} is not an http:// URL: write http://{bare}" in said

    other = invoke(*command, env={**env, "FLOWENGINE_SANDBOX_URL": not_a_sandbox})
    assert other.returncode == 2
    said = _one_error(other.stderr, "sandbox_unreachable")
    assert f"what answers at {not_a_sandbox} is not a flowengine sandbox" in said
    assert "<" not in said, "the other server's HTML page is not dumped"


@pytest.mark.slow
def test_login_against_something_that_is_not_a_sandbox_says_so(not_a_sandbox: str) -> None:
    result = run("login", "podio", "--sandbox", env={"FLOWENGINE_SANDBOX_URL": not_a_sandbox})
    assert result.returncode == 2
    said = _one_error(result.stderr, "sandbox_unreachable")
    assert "is not a flowengine sandbox (GET /_sandbox/faults: HTTP 501, text/html)" in said
    assert "DOCTYPE" not in result.stderr + result.stdout


# --- stores -------------------------------------------------------------------------------------


def test_a_bare_store_path_gets_the_sqlite_url_to_write(tmp_path: Path) -> None:
    result = invoke("tokens", "list", "--store", str(tmp_path / "x.db"))
    assert result.returncode == 2
    said = _one_error(result.stderr, "store_unsupported")
    assert f"for a SQLite file write sqlite://{tmp_path / 'x.db'}" in said
    malformed = invoke("tokens", "list", "--store", f"sqlite://{tmp_path}/x.db?kee_file=k")
    assert malformed.returncode == 2
    assert "unknown option 'kee_file'" in _one_error(malformed.stderr, "store_url_invalid")


READ_ONLY = [
    (["flows", "list"], 0),
    (["flows", "show", "0aQ3hY2x9cXv1tL5rQZ8Ww"], 4),
    (["flows", "purge"], 0),
    (["tokens", "list"], 0),
    (["tokens", "show", "podio:user:1001"], 4),
    (["tokens", "refresh", "podio:user:1001"], 4),
    (["tokens", "revoke", "podio:user:1001"], 4),
    (["tokens", "delete", "podio:user:1001"], 4),
    (["token", "header", "podio"], 4),
]


@pytest.mark.parametrize(("command", "status"), READ_ONLY, ids=[" ".join(c[:2]) for c, _ in READ_ONLY])
def test_commands_that_read_create_no_folder_and_no_database(
    command: list[str], status: int, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder"
    given = invoke(*command, "--store", f"sqlite://{missing}/fe.db")
    default = invoke(*command)  # the default store, under this test's XDG_DATA_HOME
    assert given.returncode == default.returncode == status, given.stderr
    assert not missing.exists()
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "flowengine").exists()
    if status:
        assert _one_error(given.stderr, "flow_unknown" if "flows" in command else "token_unknown")


def test_an_encrypted_store_without_its_key_says_so_in_every_reading_command(env: dict[str, str]) -> None:
    key = fe.new_store_key()
    assert invoke("login", "podio", "--sandbox", env={**env, "FLOWENGINE_KEY": key}).returncode == 0
    for command in (["tokens", "list"], ["flows", "list"], ["token", "header", "podio"]):
        result = invoke(*command, env=env)
        assert result.returncode == 4, (command, result.stdout)
        said = _one_error(result.stderr, "store_key_missing")
        assert "no key is configured (FLOWENGINE_KEY)" in said
        assert "login" not in said, "the token is there: logging in again is not the fix"
    listed = invoke("tokens", "list", "--json", env={**env, "FLOWENGINE_KEY": key})
    assert [t["key"] for t in json.loads(listed.stdout)] == ["podio:user:1001"]


async def _put_token(url: str, token: fe.Token) -> None:
    store = fe.open_store(url)
    try:
        await store.put_token(token)
    finally:
        await store.aclose()


def test_a_token_without_refresh_token_about_to_expire_says_so(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/fe.db"
    token = fe.Token(
        provider="podio", account=fe.AccountRef("user", "7"), access_token="a" * 20, token_type="bearer",
        obtained_at=time.time(), expires_at=time.time() + 30, client_id="my-app",
    )  # fmt: skip
    asyncio.run(_put_token(url, token))
    result = invoke("token", "header", "podio", "--store", url, "--min-validity", "5m")
    assert result.returncode == 4
    assert "has no refresh token" in _one_error(result.stderr, "no_refresh_token")


# --- errors are one line with a code -------------------------------------------------------------

ERRORS = [
    (["spec", "show", "no-such-spec"], "spec_not_found", 2),
    (["spec", "graph", "podio-app"], "grant_only_spec", 2),
    (["flows", "show", "no-such-flow"], "flow_unknown", 4),
    (["tokens", "show", "no:such:token"], "token_unknown", 4),
    (["tokens", "delete", "no:such:token"], "token_unknown", 4),
    (["tokens", "refresh", "podio:user:1001", "--sandbox"], "sandbox_unreachable", 2),
    (["token", "header", "podio", "--sandbox"], "sandbox_unreachable", 2),
]


@pytest.mark.parametrize(("command", "code", "status"), ERRORS, ids=[e[1] + ":" + e[0][1] for e in ERRORS])
def test_every_error_is_one_line_error_code_message(
    command: list[str], code: str, status: int, tmp_path: Path
) -> None:
    result = invoke(*command, "--store", "memory://") if command[0] != "spec" else invoke(*command)
    assert result.returncode == status
    _one_error(result.stderr, code)


def test_graph_without_graphviz_is_graphviz_missing(tmp_path: Path) -> None:
    result = invoke(
        "spec",
        "graph",
        "podio",
        "--format",
        "svg",
        "-o",
        str(tmp_path / "p.svg"),
        env={"PATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "apt-get install graphviz" in _one_error(result.stderr, "graphviz_missing")


def test_an_unknown_spec_suggests_the_closest_name_and_spec_list() -> None:
    for command in (["spec", "show", "podi"], ["login", "podi", "--sandbox"], ["spec", "graph", "podoi"]):
        result = invoke(*command)
        assert result.returncode == 2
        said = _one_error(result.stderr, "spec_not_found")
        assert "did you mean 'podio'" in said and "`flowengine spec list`" in said


def test_every_problem_of_a_spec_is_reported_not_just_the_first_unknown_key(tmp_path: Path) -> None:
    text = (ROOT / "specs" / "examples" / "authlib.yaml").read_text(
        encoding="utf-8"
    )  # its machine written out
    text = text.replace("description:", "descripton:", 1).replace("code_present", "code_presnt", 1)
    text = text.replace("dest: exchanged", "dest: exchnged", 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(text, encoding="utf-8")
    result = invoke("spec", "validate", str(broken))
    assert result.returncode == 2
    problems = result.stderr.splitlines()
    assert f"{broken}: $: unknown key(s): descripton" in problems
    assert any(p.endswith("unknown state 'exchnged'") for p in problems), problems
    assert any(p.endswith("unknown guard 'code_presnt'") for p in problems), problems


def test_login_of_a_grant_only_spec_points_to_batch_grant() -> None:
    result = invoke("login", "podio-app", "--sandbox")
    assert result.returncode == 2
    said = _one_error(result.stderr, "grant_only_spec")
    assert "`flowengine batch grant podio-app FILE.csv --sandbox`" in said
    assert "app_id,app_token" in said and "grant()" not in said


# --- signals ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [(signal.SIGINT, 130, "Cancelled"), (signal.SIGTERM, 143, "Terminated (SIGTERM)")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_stopped_loopback_login_says_truthfully_what_it_left_in_the_store(
    signum: int, status: int, said: str, env: dict[str, str], running: list[Running]
) -> None:
    login = Running("login", "podio", "--sandbox", "--loopback", "--no-browser", env=env)
    running.append(login)
    login.wait_for(WAITING)
    login.process.send_signal(signum)
    code, _out, err = login.finish()
    assert code == status
    match = re.search(
        rf"{re.escape(said)}; no token was stored; the flow (\S+) stays in the store in state 'redirected'",
        err,
    )
    assert match, err
    [flow] = json.loads(run("flows", "list", "--json", env=env).stdout)
    assert (flow["id"], flow["state"], flow["token_key"]) == (match[1], "redirected", None)
