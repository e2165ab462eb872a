"""The code stays `ruff` clean and `mypy --strict` clean, checked where the tests run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by the dev extra")
def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "flowengine", "plugins", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # a whole strict type check: 15 s on 2 cores, so the edit-test loop leaves it out
def test_mypy_strict_is_clean_for_the_core_and_plugins() -> None:
    result = _run(sys.executable, "-m", "mypy", "--strict", "flowengine", "plugins")
    assert result.returncode == 0, result.stdout + result.stderr
