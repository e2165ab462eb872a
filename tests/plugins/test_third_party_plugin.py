"""A plugin in its own distribution, found through the entry points like any first-party one.

The test lays out an installed distribution (a module and its ``.dist-info``
with ``entry_points.txt``) in a temporary folder on ``PYTHONPATH`` and runs a
fresh interpreter: nothing registers the plugin by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
"""A third-party flowengine plugin: a store scheme, a guard and a command."""
import click
from flowengine import hookimpl
from flowengine_memory import MemoryStore


class CountingStore(MemoryStore):
    created = 0

    async def create(self, flow):
        CountingStore.created += 1
        await super().create(flow)


@hookimpl
def flowengine_store(url):
    return CountingStore() if url.startswith("counting://") else None


@hookimpl
def flowengine_guards():
    return {"always_false": lambda ctx: False}


@hookimpl
def flowengine_commands(cli):
    @cli.command("hello-plugin")
    def hello():
        """Say hello from a third-party plugin."""
        click.echo("hello from flowengine_example")
'''

DRIVER = """
import asyncio, flowengine as fe
from flowengine import _plugins as plugins
from flowengine_example import CountingStore

spec = fe.load_spec("podio")
store = plugins.open_store("counting://anything")
assert isinstance(store, CountingStore), store
engine = fe.AsyncEngine(spec, client=fe.Client("id", "s", "https://example.com/cb"), store=store)
asyncio.run(engine.start())
print("created", CountingStore.created)
print("guard", "always_false" in plugins.guards_and_actions()[0])
"""


def _install(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "flowengine_example.py").write_text(PLUGIN)
    info = tmp_path / "flowengine_example-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flowengine-example\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[flowengine]\nexample = flowengine_example\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.slow  # a fresh interpreter
def test_a_third_party_plugin_is_found_through_its_entry_point(tmp_path: Path) -> None:
    env = _install(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DRIVER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["created 1", "guard True"]


@pytest.mark.slow  # a fresh interpreter
def test_a_third_party_plugin_adds_cli_commands(tmp_path: Path) -> None:
    env = _install(tmp_path)
    command = [sys.executable, "-c", "from flowengine.cli import main; main()", "hello-plugin"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from flowengine_example\n"
