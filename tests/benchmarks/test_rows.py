"""The suite's rows: a ratio row carries its two sides, and the table and JSON show them.

These check how figures are reported (no timing): the speed targets themselves
live in ``benchmarks/`` and are judged by ``python -m benchmarks``.
"""

from __future__ import annotations

import io
import json

from benchmarks.__main__ import print_rows, with_baselines
from benchmarks._common import Row, Stat, ratio_of, ratio_row, stat


def test_ratio_of_names_both_sides_with_their_figures_and_judges_the_target() -> None:
    figures = {"engine": [80.0, 90.0, 100.0], "raw": [100.0, 100.0, 100.0]}

    row = ratio_of("bench", figures, "engine", "raw", 0.8, higher_is_better=True)

    assert row.metric == "engine / raw"
    assert row.value == Stat(0.9, 0.8, 1.0, 3)
    assert (row.figure, row.figure_value) == ("engine", Stat(90.0, 80.0, 100.0, 3))
    assert (row.baseline, row.baseline_value) == ("raw", Stat(100.0, 100.0, 100.0, 3))
    assert (row.target, row.verdict) == ("≥ 0.8x", "met")


def test_a_missed_target_says_by_how_much_and_no_limit_means_no_verdict() -> None:
    figures = {"p99": [3.0], "theirs": [2.0]}

    missed = ratio_of("b", figures, "p99", "theirs", 1.0, higher_is_better=False)
    untargeted = ratio_of("b", figures, "p99", "theirs")

    assert (missed.target, missed.verdict) == ("≤ 1x", "missed by 50%")
    assert (untargeted.target, untargeted.verdict, untargeted.baseline) == ("", "", "theirs")


def test_rows_survive_json_with_their_baseline() -> None:
    row = ratio_row(
        "b", "a / c", [0.5], 0.7, higher_is_better=True, figure=("a", [1.0]), baseline=("c", [2.0])
    )

    data = json.loads(json.dumps(row.as_dict()))

    assert data["baseline"] == "c"
    assert data["baseline_value"]["median"] == 2.0
    assert data["figure_value"]["median"] == 1.0
    assert data["verdict"] == "missed by 29%"


def _row(bench: str, metric: str, median: float, unit: str) -> dict[str, object]:
    return Row(bench, metric, stat([median]), unit).as_dict()


def test_with_baselines_reads_the_sides_of_an_unnamed_ratio_from_its_bench() -> None:
    rows = [
        _row("e2e", "flowengine (aiohttp): flows/s", 900.0, "flows/s"),
        _row("e2e", "aiohttp.ClientSession: flows/s", 1000.0, "flows/s"),
        _row("other", "aiohttp.ClientSession: flows/s", 5.0, "flows/s"),
        _row("e2e", "flowengine (aiohttp) / aiohttp.ClientSession", 0.9, "x"),
        _row("cost", "authlib, shared client: CPU per flow", 200.0, "µs"),
        _row("cost", "authlib, client per flow: CPU per flow", 300.0, "µs"),
        _row("cost", "flowengine: CPU per flow", 100.0, "µs"),
        _row("cost", "flowengine / authlib (shared), CPU per flow", 0.5, "x"),
    ]

    filled = with_baselines(rows)

    assert filled[3]["baseline"] == "aiohttp.ClientSession: flows/s"
    assert filled[3]["baseline_value"]["median"] == 1000.0
    assert filled[3]["figure"] == "flowengine (aiohttp): flows/s"
    assert filled[7]["baseline"] == "authlib, shared client: CPU per flow"
    assert filled[7]["figure"] == "flowengine: CPU per flow"


def test_with_baselines_prefers_the_row_the_side_name_starts() -> None:
    rows = [
        _row("start-up", "import flowengine (-X importtime, cumulative)", 90.0, "ms"),
        _row("start-up", "import httpx (-X importtime, cumulative)", 100.0, "ms"),
        _row("start-up", "python -c 'import flowengine' (wall)", 130.0, "ms"),
        _row("start-up", "import flowengine / import httpx", 0.9, "x"),
    ]

    filled = with_baselines(rows)[3]

    assert filled["figure"] == "import flowengine (-X importtime, cumulative)"
    assert filled["baseline"] == "import httpx (-X importtime, cumulative)"


def test_with_baselines_leaves_a_ratio_whose_side_is_ambiguous_empty() -> None:
    rows = [
        _row("scale", "start with 10 pending flows: CPU per flow", 1.0, "µs"),
        _row("scale", "callback with 10 pending flows: CPU per flow", 1.0, "µs"),
        _row("scale", "start with 1,000 pending flows: CPU per flow", 1.0, "µs"),
        _row("scale", "start: 1,000 / 10 pending flows", 1.0, "x"),
    ]

    assert with_baselines(rows)[3]["baseline"] == ""


def test_the_table_shows_the_baseline_and_its_median_beside_the_ratio() -> None:
    row = ratio_of("web", {"ours": [30.0], "authlib": [20.0]}, "ours", "authlib", 1.0, higher_is_better=True)
    out = io.StringIO()

    print_rows([row], file=out)

    header, _, line = out.getvalue().splitlines()
    assert "| baseline | baseline median | target | verdict |" in header
    assert line == "| web | ours / authlib | 1.50 |  |  | x | authlib | 20.0 | ≥ 1x | met |"
