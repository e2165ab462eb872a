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
        timeout=900,
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
    rows = [row for result in report["benchmarks"].values() for row in result["rows"]]
    ratios = [row for row in rows if row["unit"] == "x"]
    assert ratios, "no ratio rows at all"
    for row in ratios:  # every ratio keeps both its sides, so a check can read it without the table
        where = f"{row['bench']}: {row['metric']}"
        assert row["baseline"] and row["figure"], where
        assert row["baseline_value"]["median"] > 0 and row["figure_value"]["median"] > 0, where
    targeted = [row for row in ratios if row["target"]]
    assert all(row["verdict"] for row in targeted)
    benches = {row["bench"].split(",")[0] for row in targeted}
    assert {"stores sqlite c1", "stores redis c1", "stores postgres c1"} <= benches, benches
    assert {"batch refresh c128", "web load"} <= benches, benches
