"""The benchmark suite runs (``python -m benchmarks --quick``): every benchmark, one table, JSON.

It must run, not meet the targets: quick figures are too short to judge by,
and speed targets live in ``benchmarks/``, never in timed tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Slow lane: runs every benchmark in subprocesses.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_quick_suite_runs_every_benchmark_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads(out.read_text())
    from benchmarks.__main__ import BENCHMARKS

    assert list(report["benchmarks"]) == list(BENCHMARKS)
    for name, result in report["benchmarks"].items():
        assert "error" not in result, name
        assert result["rows"] or "skipped" in result, name
    assert "| benchmark | measure | median | min | max |" in done.stdout
    assert "engine cost" in done.stdout and "e2e sandbox c50" in done.stdout
