"""Where output goes: a file that cannot be written is refused before any work; a failing stdout is one line.

``output_unwritable`` (exit 2) for ``spec graph -o``, ``spec from-issuer -o``,
``batch --report`` and ``batch --state``; ``> /dev/full`` gives the same line;
a reader that went away (``| head``) ends the command quietly with 141.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import invoke

#: The console script as installed, without the debug logging of tests.cli.conftest's ENTRY.
SCRIPT = (
    "import sys; from importlib.metadata import entry_points; "
    "sys.argv[0] = 'flowengine'; entry_points(group='console_scripts')['flowengine'].load()()"
)


def _one_error(stderr: str, code: str) -> str:
    lines = [line for line in stderr.splitlines() if not line.startswith(("DEBUG:", "INFO:"))]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"Error: {code}: "), stderr
    return lines[0]


@pytest.mark.parametrize("name", ["x.svg", "x.mmd"])
def test_spec_graph_to_a_missing_folder_is_output_unwritable(name: str, tmp_path: Path) -> None:
    target = tmp_path / "missing" / name
    result = invoke("spec", "graph", "podio", "-o", str(target))
    assert result.returncode == 2
    line = _one_error(result.stderr, "output_unwritable")
    assert (
        line == f"Error: output_unwritable: cannot write {target}: the folder {target.parent} does not exist"
    )
    assert not target.parent.exists()


def test_spec_from_issuer_checks_its_output_before_asking_the_issuer(tmp_path: Path) -> None:
    # Nothing listens on port 9: asked, the issuer would be a discovery or transport error (exit 4).
    target = tmp_path / "missing" / "spec.yaml"
    result = invoke("spec", "from-issuer", "http://127.0.0.1:9", "-o", str(target))
    assert result.returncode == 2
    assert str(target) in _one_error(result.stderr, "output_unwritable")


def test_spec_graph_refuses_a_suffix_that_names_no_format(tmp_path: Path) -> None:
    target = tmp_path / "podio.pdf"
    result = invoke("spec", "graph", "podio", "-o", str(target))
    assert result.returncode == 2
    assert ".pdf names no format" in result.stderr
    assert all(suffix in result.stderr for suffix in (".mmd", ".dot", ".gv", ".svg", ".png", "--format"))
    assert not target.exists()
    # With --format the name is the person's business; with no suffix the text is Mermaid.
    assert invoke("spec", "graph", "podio", "--format", "dot", "-o", str(target)).returncode == 0
    assert target.read_text(encoding="utf-8").startswith("digraph")
    assert invoke("spec", "graph", "podio", "-o", str(tmp_path / "graph")).returncode == 0
    assert "stateDiagram-v2" in (tmp_path / "graph").read_text(encoding="utf-8")


@pytest.mark.parametrize("option", ["--report", "--state"])
def test_batch_refuses_an_unwritable_report_or_state_before_refreshing_anything(
    option: str, env: dict[str, str], tmp_path: Path
) -> None:
    assert invoke("login", "podio", "--sandbox", "--approve", env=env).returncode == 0
    before = json.loads(invoke("tokens", "list", "--json", env=env).stdout)
    target = tmp_path / "missing" / "file.json"

    result = invoke("batch", "refresh", "--all", "--sandbox", option, str(target), env=env)

    assert result.returncode == 2
    assert str(target) in _one_error(result.stderr, "output_unwritable")
    assert json.loads(invoke("tokens", "list", "--json", env=env).stdout) == before  # nothing refreshed
    assert not target.parent.exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["spec", "list"],
        ["spec", "show", "podio", "--json"],
        ["login", "podio", "--sandbox", "--json"],
    ],
)
def test_a_full_stdout_is_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, "FLOWENGINE_STORE": f"sqlite://{tmp_path}/fe.db"},
            check=False,
        )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("  ")]
    assert lines[-1] == "Error: output_unwritable: cannot write to stdout: No space left on device"
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr


def test_a_reader_that_went_away_ends_the_command_quietly_with_141() -> None:
    reading, writing = os.pipe()
    os.close(reading)  # `| head` has read what it wanted and gone
    try:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, "spec", "list"],
            stdout=writing,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writing)
    assert (result.returncode, result.stderr) == (141, "")
