"""`flowengine spec list|show|validate|graph`, through the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from flowengine.cli import GRAPH_FORMATS, cli

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz (.ci/run installs it)")


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_list_prints_name_tab_path_and_json_says_more(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\n")
    code, out, _ = invoke("spec", "list", env={"FLOWENGINE_SPEC_PATH": str(tmp_path)})
    assert code == 0
    assert out.splitlines()[0] == f"broken\t{tmp_path / 'broken.yaml'}"
    assert "podio\t" in out
    code, out, _ = invoke("spec", "list", "--json", env={"FLOWENGINE_SPEC_PATH": str(tmp_path)})
    entries = {entry["name"]: entry for entry in json.loads(out)}
    assert entries["podio"]["kind"] == "flow"
    assert entries["podio-app"]["kind"] == "grant-only"
    assert entries["podio"]["problems"] == []
    assert any("required key missing" in p for p in entries["broken"]["problems"])


def test_show_says_what_the_spec_says() -> None:
    code, out, _ = invoke("spec", "show", "podio")
    assert code == 0
    assert "podio (flow):" in out
    assert "  token       https://api.podio.com/oauth/token/v2" in out
    assert "token use: Authorization: OAuth2 <access token>" in out
    assert "  callback: redirected -> authorized when code_present do record_code" in out
    code, out, _ = invoke("spec", "show", "podio-app", "--json")
    document = json.loads(out)
    assert document["machine"] is None
    assert document["inputs"] == ["app_id", "app_token"]


def test_show_and_graph_of_an_unknown_spec_exit_2() -> None:
    assert invoke("spec", "show", "no-such-spec")[0] == 2
    assert invoke("spec", "graph", "no-such-spec")[0] == 2
    code, _, err = invoke("spec", "graph", "podio-app")
    assert code == 2
    assert "grant-only" in err


def test_validate_lists_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nendpoints: {}\ngrants: {}\n"
        "machine: {states: [a], initial: b, final: [], transitions: []}\n"
    )
    code, out, err = invoke("spec", "validate", "podio", str(bad))
    assert code == 2
    assert "podio: ok" in out
    assert f"{bad}: $.machine" in err


def test_graph_mermaid_has_guards_on_the_edges() -> None:
    code, out, _ = invoke("spec", "graph", "podio")
    assert code == 0
    assert "stateDiagram-v2\n" in out
    assert "  redirected --> authorized: callback [code_present]\n" in out
    code, out, _ = invoke("spec", "graph", "podio", "--format", "dot")
    assert '\texchanging -> exchanged [label="answer [token_received]"]\n' in out


@needs_dot
@pytest.mark.parametrize(("name", "magic"), [("podio.svg", b"<?xml"), ("podio.png", b"\x89PNG")])
def test_graph_images_through_graphviz(tmp_path: Path, name: str, magic: bytes) -> None:
    target = tmp_path / name
    code, _, err = invoke("spec", "graph", "podio", "-o", str(target))  # format from the suffix
    assert code == 0, err
    data = target.read_bytes()
    assert data.startswith(magic)
    if name.endswith(".svg"):
        assert b"token_received" in data


def test_graph_image_without_graphviz_says_what_to_install(tmp_path: Path) -> None:
    code, _, err = invoke("spec", "graph", "podio", "--format", "svg", env={"PATH": str(tmp_path)})
    assert code == 2
    assert "apt-get install graphviz" in err


@pytest.mark.slow
def test_shell_completion_offers_commands_spec_names_and_formats() -> None:
    def complete(words: str, cword: int) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", "from flowengine.cli import main; main()"],
            env={
                **os.environ,
                "_FLOWENGINE_COMPLETE": "bash_complete",
                "COMP_WORDS": words,
                "COMP_CWORD": str(cword),
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout.splitlines()

    assert {"plain,token", "plain,tokens"} <= set(complete("flowengine to", 1))
    assert "plain,podio" in complete("flowengine login po", 2)
    assert complete("flowengine spec graph podio --format ", 5) == [f"plain,{f}" for f in GRAPH_FORMATS]


def test_validate_json_reports_each_spec(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\n")
    code, out, _ = invoke("spec", "validate", "--json", "podio", str(bad))
    assert code == 2
    [good, broken] = json.loads(out)
    assert good == {"spec": "podio", "ok": True, "problems": []}
    assert broken["ok"] is False
    assert broken["problems"]
    assert all(p.startswith(f"{bad}: ") for p in broken["problems"])
