"""The benchmark suite: ``python -m benchmarks [--quick] [--json FILE] [--only NAME,...]``.

Runs every benchmark, each in a fresh Python process (one benchmark's million
flows or open sockets never weigh on the next one's figures), and prints one
Markdown table: the median of several rounds with min and max beside it, and
for each target whether it is met or by how much it is missed. Every ratio
row names its baseline and that baseline's median beside its own figure.
``--json`` also writes every figure, the machine and the command; each row
there keeps its two sides (``figure``, ``figure_value``, ``baseline``,
``baseline_value``) with its ratio, target and verdict, so a check can read
the ratios without parsing the table. ``--quick`` is the
smoke run: every benchmark runs, with fewer flows, tokens and rounds, in a
few minutes; its figures are too short to judge the targets by.

Benchmarks, in the order they run (each module's docstring says what it measures):
startup, spec_load, engine_cost, scale, memory, e2e, stores, batch, web_load.
A benchmark whose module is not there (``batch`` until it lands) is skipped
with a note.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from benchmarks._common import Row, Stat, machine

__all__ = ["BENCHMARKS", "main", "print_rows", "run_one"]

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("startup", "spec_load", "engine_cost", "scale", "memory", "e2e", "stores", "batch", "web_load")
#: Seconds one benchmark may take before the suite gives up on it.
TIMEOUT = {"quick": 240, "full": 3600}


def _single(value: float) -> Stat:
    return Stat(value, value, value, 1)


def _rows_of(name: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The table rows of a benchmark's result: its own, or read from the shape it returns."""
    if "rows" in result:
        return with_baselines(
            [row.as_dict() if isinstance(row, Row) else dict(row) for row in result["rows"]]
        )
    return _generic_rows(name, result)


def _words(name: str) -> set[str]:
    return set(re.findall(r"[\w.]+", name.lower()))


def _side_row(name: str, candidates: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The figure row a ratio side names: that name before its ``:``, or starting it, or holding its words."""
    exact = [row for row in candidates if row["metric"].split(": ", 1)[0].strip() == name]
    if len(exact) == 1:
        return exact[0]
    prefixed = [row for row in candidates if row["metric"].startswith(name + " ")]
    if len(prefixed) == 1:
        return prefixed[0]
    wanted = _words(name)
    loose = [row for row in candidates if wanted <= _words(row["metric"].split(": ", 1)[0])]
    return loose[0] if len(loose) == 1 else None


def with_baselines(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill in the two sides of a ratio row (``A / B ...``) that did not name them, from its bench's rows.

    A benchmark should name them itself (``ratio_of``, or ``ratio_row`` with
    ``figure=``/``baseline=``); this reads them back from the rows the ratio
    was made of. A side it cannot find stays empty, which the smoke test flags.
    """
    for row in rows:
        if row["unit"] != "x" or row.get("baseline") or " / " not in row["metric"]:
            continue
        left, right = row["metric"].split(" / ", 1)
        right = right.split(": ", 1)[0].split(", ", 1)[0].strip()
        candidates = [other for other in rows if other["bench"] == row["bench"] and other["unit"] != "x"]
        figure, baseline = _side_row(left.strip(), candidates), _side_row(right, candidates)
        if figure is None or baseline is None or figure is baseline:
            continue
        row.update(
            figure=figure["metric"],
            figure_value=figure["value"],
            baseline=baseline["metric"],
            baseline_value=baseline["value"],
        )
    return rows


def _generic_rows(name: str, result: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Every number in a result the suite knows nothing about, one row each."""
    rows: list[dict[str, Any]] = []
    for key, value in result.items():
        path = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            rows.append(Row(name, path, _single(float(value)), "").as_dict())
        elif isinstance(value, Mapping):
            rows += _generic_rows(name, value, f"{path}.")
    return rows


def _run_module(name: str, quick: bool) -> dict[str, Any]:
    """Import and run one benchmark in this process; its result as JSON data."""
    module = importlib.import_module(f"benchmarks.{name}")
    result = dict(module.run(quick))
    result["rows"] = _rows_of(name, result)
    data: dict[str, Any] = json.loads(json.dumps(result, default=_json_default))
    return data


def _json_default(value: object) -> object:
    if isinstance(value, Row | Stat):
        return attrs.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def run_one(name: str, quick: bool, out: str) -> None:
    """Child-process entry: run one benchmark and write its result (or its failure) to ``out``."""
    began = time.perf_counter()
    try:
        result = _run_module(name, quick)
    except Exception:
        result = {"error": traceback.format_exc(limit=8)}
    result["seconds"] = round(time.perf_counter() - began, 2)
    Path(out).write_text(json.dumps(result))


def _run_isolated(name: str, quick: bool) -> dict[str, Any]:
    if importlib.util.find_spec(f"benchmarks.{name}") is None:
        return {"skipped": f"benchmarks/{name}.py is not there yet", "rows": []}
    with tempfile.TemporaryDirectory(prefix=f"fe-bench-{name}-") as tmp:
        out = Path(tmp) / "result.json"
        code = f"from benchmarks.__main__ import run_one; run_one({name!r}, {quick!r}, {str(out)!r})"
        try:
            subprocess.run(  # noqa: S603 - our own interpreter running our own benchmark
                [sys.executable, "-c", code],
                cwd=ROOT,
                check=False,
                stdout=sys.stderr,  # a benchmark's own printing stays out of the table
                timeout=TIMEOUT["quick" if quick else "full"],
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                },
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {TIMEOUT['quick' if quick else 'full']} s", "rows": []}
        if not out.exists():
            return {"error": "the benchmark process died without a result", "rows": []}
        result: dict[str, Any] = json.loads(out.read_text())
    result.setdefault("rows", [])
    return result


def _number(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def print_rows(rows: Iterable[Row | Mapping[str, Any]], *, file: Any = None) -> None:
    """The rows as a Markdown table: median, min, max, unit, baseline and its median, target, verdict."""
    out = file or sys.stdout
    print(
        "| benchmark | measure | median | min | max | unit | baseline | baseline median | target | verdict |",
        file=out,
    )
    print("| --- | --- | ---: | ---: | ---: | --- | --- | ---: | --- | --- |", file=out)
    for row in rows:
        data = row.as_dict() if isinstance(row, Row) else row
        value = data["value"]
        spread = ("", "") if value["rounds"] <= 1 else (_number(value["low"]), _number(value["high"]))
        base = data.get("baseline_value")
        print(
            f"| {data['bench']} | {data['metric']} | {_number(value['median'])} | {spread[0]} | {spread[1]} "
            f"| {data['unit']} | {data.get('baseline', '')} | {_number(base['median']) if base else ''} "
            f"| {data['target']} | {data['verdict']} |",
            file=out,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; exit 1 when a benchmark failed to run (missed targets are reported, not failed)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the smoke run: fewer flows and rounds")
    parser.add_argument("--json", type=Path, help="also write every figure here as JSON")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    report: dict[str, Any] = {
        "command": "python -m benchmarks"
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if args.only else ""),
        "quick": args.quick,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "benchmarks": {},
    }
    began = time.perf_counter()
    failed = []
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result = _run_isolated(name, args.quick)
        report["benchmarks"][name] = result
        if "error" in result:
            failed.append(name)
            print(f"{name} failed:\n{result['error']}", file=sys.stderr)
        elif "skipped" in result:
            print(f"{name} skipped: {result['skipped']}", file=sys.stderr)
    report["seconds"] = round(time.perf_counter() - began, 1)
    info = report["machine"]
    print(
        f"\n{report['command']}: {info['cpus']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"load {info['load_1min_at_start']} at start, {report['seconds']} s\n"
    )
    print_rows(row for result in report["benchmarks"].values() for row in result["rows"])
    notes = [
        f"- {name}: skipped: {r['skipped']}" for name, r in report["benchmarks"].items() if "skipped" in r
    ]
    notes += [f"- {name}: FAILED to run (see stderr)" for name in failed]
    if notes:
        print("\n" + "\n".join(notes))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
