"""The documentation stays true: its scripts run, and it names every public name and command.

A fenced ```python block in README.md, docs/frontends.md or docs/using-tokens.md is run
when the line before its fence is ``<!-- test: run -->``: it must be a complete script.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import flowengine
import pytest
from flowengine import _plugins as plugins
from flowengine.cli import cli

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE_IN = ("README.md", "docs/frontends.md", "docs/using-tokens.md")
MARKER = "<!-- test: run -->"
_BLOCK = re.compile(r"^" + re.escape(MARKER) + r"[ \t]*\n```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def _runnable_blocks() -> list[tuple[str, str]]:
    blocks = []
    for name in RUNNABLE_IN:
        text = (ROOT / name).read_text(encoding="utf-8")
        blocks += [(f"{name}#{i + 1}", code) for i, code in enumerate(_BLOCK.findall(text))]
    return blocks


BLOCKS = _runnable_blocks()


def test_every_run_marker_is_on_a_python_block() -> None:
    for name in RUNNABLE_IN:
        text = (ROOT / name).read_text(encoding="utf-8")
        marked = text.count(MARKER)
        assert marked > 0, f"{name} has no {MARKER} block"
        assert len(_BLOCK.findall(text)) == marked, f"{name}: a {MARKER} line is not followed by ```python"


@pytest.mark.parametrize(("block_id", "code"), BLOCKS, ids=[block_id for block_id, _ in BLOCKS])
@pytest.mark.slow
def test_documented_script_runs(block_id: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    # The examples start the embedded sandbox and keep everything in memory.
    env = {k: v for k, v in os.environ.items() if k not in ("FLOWENGINE_SANDBOX_URL", "FLOWENGINE_STORE")}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{block_id} failed:\n{result.stdout}\n{result.stderr}"


def test_every_public_name_is_in_the_python_api_docs() -> None:
    docs = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    missing = [name for name in flowengine.__all__ if name != "__version__" and f"`{name}`" not in docs]
    assert not missing, f"docs/python-api.md does not mention: {', '.join(missing)}"


def _command_paths(group: click.Group, prefix: str) -> Iterator[str]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        yield path
        if isinstance(command, click.Group):
            yield from _command_paths(command, path)


def test_every_cli_command_is_in_the_cli_docs() -> None:
    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    paths = list(_command_paths(cli, "flowengine"))
    assert paths, "the flowengine command has no subcommands"
    missing = [path for path in paths if path not in docs]
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)}"


def test_ci_runs_exactly_the_test_command_readme_and_contributing_give() -> None:
    """.ci/run's one pytest command is README's (its Test section), and CONTRIBUTING gives the same."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [command] = re.findall(r"^## Test\n\n```sh\n(.+)\n```", readme, re.M)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert [line for line in ci if "pytest" in line and not line.startswith("#")] == [command]
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith(command + " ") for line in contributing), command
