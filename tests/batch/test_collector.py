"""The collector's pace for batch processes: ``tune_collector`` and the ``flowengine batch`` command."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from click.testing import CliRunner
from flowengine import _plugins as plugins
from flowengine.cli import cli

from flowengine_batch import BATCH_GC_THRESHOLD, tune_collector
from tests.conftest import SandboxFixture


def test_tune_collector_raises_the_first_threshold_and_returns_the_old_ones() -> None:
    gc.set_threshold(700, 10, 10)
    assert tune_collector() == (700, 10, 10)
    assert gc.get_threshold() == (BATCH_GC_THRESHOLD, 10, 10)


def test_a_higher_threshold_is_kept_and_the_older_generations_are_not_touched() -> None:
    gc.set_threshold(50_000, 20, 5)
    tune_collector()
    assert gc.get_threshold() == (50_000, 20, 5)
    tune_collector(80_000)
    assert gc.get_threshold() == (80_000, 20, 5)


@pytest.mark.parametrize("command", ["refresh", "exchange", "grant"])
def test_the_batch_command_runs_its_process_at_the_batch_pace(
    command: str, tmp_path: Path, sandbox: SandboxFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)  # as main() does: batch is a plugin's
    monkeypatch.setenv("FLOWENGINE_SANDBOX_URL", sandbox.server.url)
    empty = tmp_path / "items"
    empty.write_text("app_id,app_token\n" if command == "grant" else "")
    args = {
        "refresh": ["batch", "refresh", "--all"],
        "exchange": ["batch", "exchange", str(empty)],
        "grant": ["batch", "grant", "podio-app", str(empty)],
    }[command]
    gc.set_threshold(700, 10, 10)
    result = CliRunner().invoke(
        cli, [*args, "--sandbox", "--quiet", "--store", f"sqlite://{tmp_path / 's.db'}"]
    )
    assert result.exit_code == 0, result.output
    assert gc.get_threshold() == (BATCH_GC_THRESHOLD, 10, 10)
