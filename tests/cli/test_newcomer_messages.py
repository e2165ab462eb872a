"""Issue 17, re-reviewed: messages a newcomer meets, run as they run the command, status and words checked.

Each test is a class of slip (a name typed as a file, the wrong key, two modes at
once, a sandbox that is gone, …), tried with cases beyond the one the review found.
The commands run in this process (``command``: every log record on stderr at DEBUG, as
``run`` sets it, so "one line on stderr" still means no log line came with it); a
separate process (``run``) where the process is the point: a sandbox that ends with
the command that started it, a server's start-up.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import flowengine as fe
import pytest

from tests.cli.conftest import Ran, invoke, run
from tests.support.terminal import Terminal, flowengine_command, needs_tmux

ROOT = Path(__file__).resolve().parents[2]


def _one_error(stderr: str, code: str) -> str:
    """The single ``Error: CODE: …`` line of stderr (debug logging aside); fails on anything else."""
    lines = [line for line in stderr.splitlines() if not line.startswith(("DEBUG:", "INFO:"))]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"Error: {code}: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def command(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Ran:
    """The command in this process, its log records on stderr at DEBUG as ``run``'s process has them."""
    return invoke(*args, env=env, stdin=stdin, logs="debug")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- 5: a SPEC that is not a file is a name ------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "guess"),
    [("Podio", "'podio'"), ("PODIO", "'podio'"), ("podio.yaml", "'podio'"), ("GitHub.yml", "'github'")],
)
def test_a_spec_that_is_no_file_is_looked_up_as_a_name_with_a_guess(ref: str, guess: str) -> None:
    for args in (["spec", "show", ref], ["login", ref, "--sandbox"]):
        result = command(*args)
        assert result.returncode == 2
        said = _one_error(result.stderr, "spec_not_found")
        assert f"did you mean {guess}?" in said, said
        assert "cannot read" not in said


def test_a_missing_spec_file_path_says_there_is_no_such_file() -> None:
    result = invoke("spec", "show", "specs/nope.yaml")
    assert result.returncode == 2
    said = _one_error(result.stderr, "spec_not_found")
    assert "there is no file specs/nope.yaml" in said
    assert said.endswith(
        "(`flowengine spec list` lists every named spec; a SPEC may also be the path of a YAML file)"
    )


# --- 6: the wrong store key ---------------------------------------------------------------


def test_every_reading_command_refuses_a_store_opened_with_the_wrong_key(
    env: dict[str, str], tmp_path: Path
) -> None:
    store = {**env, "FLOWENGINE_STORE": f"sqlite://{tmp_path}/sealed.db"}
    assert (
        invoke("login", "podio", "--sandbox", env={**store, "FLOWENGINE_KEY": fe.new_store_key()}).returncode
        == 0
    )
    wrong = {**store, "FLOWENGINE_KEY": fe.new_store_key()}
    for args in (
        ["tokens", "list"],
        ["tokens", "list", "--json"],
        ["flows", "list"],
        ["flows", "list", "--state", "exchanged"],
        ["token", "header", "podio", "user:1001"],
        ["status", "--refresh-window", "9h"],  # lists the token as expiring: it must be read
    ):
        result = command(*args, env=wrong)
        assert result.returncode == 4, (args, result.stderr)
        said = _one_error(result.stderr, "store_corrupt")
        assert "cannot be decrypted with this key" in said and "FLOWENGINE_KEY" in said
        assert "login" not in said, "the token is there: logging in again is not the fix"
        assert result.stdout == ""


# --- 7: two login modes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--paste", "--loopback"], "--loopback and --paste"),
        (["--device", "--paste"], "--paste and --device"),
        (["--loopback", "--device", "--paste"], "--loopback, --paste and --device"),
    ],
)
def test_two_login_modes_at_once_are_a_usage_error(flags: list[str], named: str) -> None:
    result = invoke("login", "podio", "--sandbox", *flags)
    assert result.returncode == 2
    assert f"Error: {named} are different ways to log in: give only one of them" in result.stderr


# --- 8, 9: grant-only specs and flow specs where the other is needed ------------------------


def test_web_serve_refuses_a_grant_only_spec_at_start_up_before_any_warning() -> None:
    for specs in (["podio-app"], ["podio", "podio-password"]):
        args = [arg for name in specs for arg in ("--spec", name)]
        result = run("web", "serve", *args, "--sandbox", "--store", "memory://", "--port", "0")
        assert result.returncode == 2
        said = _one_error(result.stderr, "grant_only_spec")  # one line: no session-secret warning first
        assert f"`flowengine batch grant {specs[-1]} FILE.csv`" in said


def test_batch_grant_of_a_flow_spec_says_to_log_in(env: dict[str, str], tmp_path: Path) -> None:
    rows = tmp_path / "apps.csv"
    rows.write_text("app_id,app_token\n1,t\n", encoding="utf-8")
    for spec in ("podio", "github"):
        result = invoke("batch", "grant", spec, str(rows), "--sandbox", env=env)
        assert result.returncode == 2
        said = _one_error(result.stderr, "grant_unsupported")
        assert "has no non-interactive grant" in said and f"`flowengine login {spec}`" in said
        assert "[]" not in said


# --- 10, 11: the sandbox URL ------------------------------------------------------------------


def test_token_header_sandbox_checks_that_a_sandbox_answers(env: dict[str, str]) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    assert command("token", "header", "podio", "--sandbox", env=env).returncode == 0
    port = _closed_port()
    nothing = command(
        "token",
        "header",
        "podio",
        "--sandbox",
        env={**env, "FLOWENGINE_SANDBOX_URL": f"http://127.0.0.1:{port}"},
    )
    assert nothing.returncode == 2
    assert f"no sandbox answers at http://127.0.0.1:{port}" in _one_error(
        nothing.stderr, "sandbox_unreachable"
    )
    assert nothing.stdout == ""


def test_an_https_sandbox_url_says_to_write_http(env: dict[str, str]) -> None:
    https = {**env, "FLOWENGINE_SANDBOX_URL": env["FLOWENGINE_SANDBOX_URL"].replace("http://", "https://")}
    plain = env["FLOWENGINE_SANDBOX_URL"]
    for args in (["login", "podio", "--sandbox"], ["token", "header", "podio", "--sandbox"]):
        result = command(*args, env=https)
        assert result.returncode == 2
        said = _one_error(result.stderr, "sandbox_unreachable")
        assert said.endswith(f"a sandbox serves plain http, write {plain}"), said
    doctor = command("doctor", env=https)
    assert doctor.returncode == 4
    assert f"a sandbox serves plain http, write {plain}" in doctor.stdout


# --- 12: spec from-issuer offline ------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "why"),
    [
        ("https://127.0.0.1:{closed_port}", "the connection was refused (nothing listens there?)"),
        (
            "https://accounts.example.invalid",
            "its host name does not resolve (no network, or a typo in the URL?)",
        ),
    ],
    ids=["refused", "unresolved"],  # the same on every xdist worker: no port in an id
)
def test_spec_from_issuer_and_login_say_plainly_why_the_document_could_not_be_fetched(
    issuer: str, why: str, tmp_path: Path
) -> None:
    issuer = issuer.format(closed_port=_closed_port())
    login = [
        "login",
        "oidc",
        "-c",
        f"issuer={issuer}",
        "--client-id",
        "x",
        "--client-secret",
        "y",
        "--no-browser",
    ]
    for args in (["spec", "from-issuer", issuer], login):
        result = command(*args, env={"FLOWENGINE_STORE": f"sqlite://{tmp_path}/fe.db"})
        assert result.returncode == 4
        said = _one_error(result.stderr, "discovery_unavailable")
        assert said == f"Error: discovery_unavailable: cannot fetch the discovery document of {issuer}: {why}"
        assert result.stdout == ""


# --- 13: a sandbox's token after its sandbox is gone ------------------------------------------


def test_refreshing_a_token_of_a_gone_sandbox_says_it_is_gone(env: dict[str, str]) -> None:
    own = {key: value for key, value in env.items() if key != "FLOWENGINE_SANDBOX_URL"}
    assert run("login", "podio", "--sandbox", env={**own, "FLOWENGINE_SANDBOX_URL": ""}).returncode == 0
    for args, where in ((["--sandbox"], env), ([], own)):
        result = command("tokens", "refresh", "podio:user:1001", *args, env=where)
        assert result.returncode == 2
        said = _one_error(result.stderr, "token_endpoint_mismatch")
        assert re.search(r"came from the sandbox at http://127\.0\.0\.1:\d+, which no longer answers", said)
        assert "a sandbox's tokens live only as long as that sandbox" in said
        assert "`flowengine login podio --sandbox`" in said


def test_refreshing_a_token_of_a_running_sandbox_names_that_sandbox(env: dict[str, str]) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    url = env["FLOWENGINE_SANDBOX_URL"]
    own = {key: value for key, value in env.items() if key != "FLOWENGINE_SANDBOX_URL"}
    without = command("tokens", "refresh", "podio:user:1001", env=own)
    assert without.returncode == 2
    said = _one_error(without.stderr, "credentials_missing")
    hint = "was issued by the sandbox (client 'sandbox-client'): add --sandbox, with FLOWENGINE_SANDBOX_URL="
    assert said.endswith(hint + url)
    elsewhere = command(
        "tokens", "refresh", "podio:user:1001", "--sandbox", env={**env, "FLOWENGINE_SANDBOX_URL": url + "/"}
    )
    assert elsewhere.returncode == 0, "the same sandbox, written with a trailing slash"


# --- 16: doctor ------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="a /proc file system")
def test_doctor_fails_a_store_whose_folder_cannot_be_made(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("", encoding="utf-8")
    for url, why in (
        ("sqlite:///proc/flowengine/x.db", "/proc takes no new folder"),
        (f"sqlite://{a_file}/x.db", "Not a directory"),
    ):
        result = command("doctor", "--store", url)
        assert result.returncode == 4
        [line] = [line for line in result.stdout.splitlines() if line.startswith("FAIL  store")]
        assert "cannot be created" in line and why in line, line
    assert not list(tmp_path.glob(".flowengine-doctor-*"))
    fine = command("doctor", "--store", f"sqlite://{tmp_path}/new/x.db")
    assert "not created yet; the first login creates it" in fine.stdout
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".flowengine-doctor-*"))


def test_doctor_fails_a_spec_path_folder_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = command("doctor", "--store", "memory://", env={"FLOWENGINE_SPEC_PATH": str(missing)})
    assert result.returncode == 4
    assert re.search(
        rf"^FAIL +spec path +{re.escape(str(missing))} \(in FLOWENGINE_SPEC_PATH\) is not a folder$",
        result.stdout,
        re.M,
    )
    assert "All is well" not in result.stdout


# --- 17: tables on a terminal ----------------------------------------------------------------------


@needs_tmux
@pytest.mark.parametrize("width", [200, 60])
def test_a_table_on_a_terminal_never_cuts_nor_wraps_a_cell(
    env: dict[str, str], terminal: list[Terminal], width: int
) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    listed = command("flows", "list", "--json", env=env)
    [flow_id] = re.findall(r'"id": "([0-9a-f]{32})"', listed.stdout)
    # COLUMNS as a shell sets it, so that no COLUMNS inherited from the test run decides the width.
    term = Terminal(flowengine_command("flows", "list"), {**env, "COLUMNS": str(width)}, width=width)
    terminal.append(term)
    term.wait_for(r"exit=\d+")
    screen = term.screen()
    assert "exit=0" in screen and "…" not in screen
    lines = screen.splitlines()
    assert all(len(line) <= width for line in lines)
    if width == 200:  # the table fits: one row, every cell whole
        assert re.search(r"ID\s+SPEC\s+STATE\s+CREATED\s+ACCOUNT\s+ERROR", screen)
        assert any(flow_id in line and "podio" in line and "exchanged" in line for line in lines)
    else:  # too narrow for the table: one block per row
        assert f"ID       {flow_id}" in lines and "STATE    exchanged" in lines


# --- 18: smaller messages ----------------------------------------------------------------------


def test_an_invalid_value_names_its_option(env: dict[str, str]) -> None:
    for args, option in (
        (["login", "podio", "--sandbox", "--timeout", "5x"], "'--timeout'"),
        (["tokens", "list", "--expiring-within", "9x"], "'--expiring-within'"),
        (["token", "header", "podio", "--min-validity", "1y"], "'--min-validity'"),
        (["batch", "refresh", "--all", "--sandbox", "--rate-limit", "5/x"], "'--rate-limit'"),
        (["batch", "refresh", "--all", "--sandbox", "--client-rate-limit", "x"], "'--client-rate-limit'"),
    ):
        result = invoke(*args, env=env)
        assert result.returncode == 2, args
        assert f"Error: Invalid value for {option}: " in result.stderr, result.stderr


def test_a_connection_value_is_refused_in_plain_words(env: dict[str, str]) -> None:
    empty = invoke("login", "zendesk", "--sandbox", "-c", "subdomain=", env=env)
    assert empty.returncode == 2
    said = _one_error(empty.stderr, "connection_invalid")
    assert "connection value 'subdomain' is empty" in said and said.endswith("for example subdomain=acme")
    wrong = invoke("login", "zendesk", "--sandbox", "-c", "subdomain=a b", env=env)
    said = _one_error(wrong.stderr, "connection_invalid")
    assert "\\\\" not in said and r"(?:\.zendesk\.com/?)?" in said


def test_paste_mode_with_input_ended_puts_the_error_on_its_own_line(env: dict[str, str]) -> None:
    result = command("login", "podio", "--sandbox", "--paste", "--no-browser", "--json", env=env, stdin="")
    assert result.returncode == 4
    assert re.search(r"^Callback URL: \nError: paste_ended: ", result.stderr, re.MULTILINE), result.stderr
    plain = command("login", "podio", "--sandbox", "--paste", "--no-browser", env=env, stdin="")
    assert plain.stdout.endswith("Callback URL: \n")


def test_an_empty_listing_says_which_filter_names_nothing_known(env: dict[str, str]) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    for args, hint in (
        (
            ["flows", "list", "--state", "redirectd"],
            "--state 'redirectd' is not a known name; did you mean 'redirected'?",
        ),
        (["flows", "list", "--spec", "podoi"], "--spec 'podoi' is not a known name; did you mean 'podio'?"),
        (
            ["tokens", "list", "--provider", "podoi"],
            "--provider 'podoi' is not a known name; did you mean 'podio'?",
        ),
        (["tokens", "list", "--provider", "zzz", "--json"], "--provider 'zzz' is not a known name (known: "),
    ):
        result = command(*args, env=env)
        assert result.returncode == 0
        assert f"Hint: no {args[0]} match; {hint}" in result.stderr
    quiet = command("flows", "list", "--spec", "github", env=env)  # a known name, no flows: nothing to say
    assert "Hint" not in quiet.stderr


def test_a_device_login_without_credentials_suggests_the_sandbox(tmp_path: Path) -> None:
    result = command("login", "google", "--device", env={"XDG_CONFIG_HOME": str(tmp_path)}, stdin="")
    assert result.returncode == 2
    said = _one_error(result.stderr, "credentials_missing")
    assert said.endswith("; to try flowengine without credentials, add --sandbox")


# --- 19-21: docs and help say what is so ------------------------------------------------------------


def test_flow_ids_in_the_docs_and_help_are_32_hex_characters() -> None:
    shown = re.compile(r"(?:flows show |the flow |flow:|flow\.id = ')([A-Za-z0-9_-]{16,})")
    texts = {path.name: path.read_text(encoding="utf-8") for path in (ROOT / "docs").glob("*.md")}
    texts["flows show --help"] = invoke("flows", "show", "--help").stdout
    found = [(name, flow_id) for name, text in texts.items() for flow_id in shown.findall(text)]
    assert len(found) >= 5
    assert [(n, i) for n, i in found if not re.fullmatch(r"[0-9a-f]{32}", i)] == []


def test_help_says_what_the_commands_do() -> None:
    assert "revoke" in invoke("tokens", "--help").stdout.split("Options:")[0]
    for command in ("revoke", "refresh"):
        assert "Refresh against" not in invoke("tokens", command, "--help").stdout
    assert "``" not in invoke("spec", "list", "--help").stdout
    intro = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8").split("## ")[0]
    provided = re.search(r"`flowengine login`[^;]*come from `flowengine_cli`", intro)
    assert provided is not None and "`flowengine status`" in provided[0]
