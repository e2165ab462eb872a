"""What every benchmark of the suite shares: rows of the table, rounds, fixtures, servers.

The machines these run on are shared and noisy, so a figure is the median of
several rounds with the min and max beside it, and every comparison is a
ratio measured in the same run, the two sides interleaved round by round
(A B, then B A, ...) so that a burst of load from a neighbour hits both.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import attrs

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "REDIRECT_URI",
    "TOKEN_BODY",
    "MemoryTransport",
    "Row",
    "Stat",
    "cpu_seconds",
    "interleaved",
    "machine",
    "ratio_of",
    "ratio_row",
    "server_process",
    "stat",
    "verdict",
]

#: The sandbox's registered client (flowengine_sandbox.settings), used against every server.
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - the sandbox's public test credential
REDIRECT_URI = "http://127.0.0.1/flowengine/callback"

#: A Podio token response: what the in-memory transports and the raw server answer.
TOKEN_BODY = json.dumps(
    {
        "access_token": "a" * 128,
        "token_type": "bearer",
        "expires_in": 28800,
        "refresh_token": "r" * 64,
        "scope": "global:all",
        "ref": {"type": "user", "id": 1001},
    }
).encode()


@attrs.frozen
class Stat:
    """The median of some rounds, with the smallest and largest beside it."""

    median: float
    low: float
    high: float
    rounds: int

    def scaled(self, factor: float) -> Stat:
        """The same figures times ``factor`` (seconds to microseconds, ...)."""
        return Stat(self.median * factor, self.low * factor, self.high * factor, self.rounds)


def stat(values: Sequence[float]) -> Stat:
    """Median, min and max of the rounds."""
    return Stat(statistics.median(values), min(values), max(values), len(values))


@attrs.frozen
class Row:
    """One line of the suite's table; ``target`` and ``verdict`` only on the lines that have a target.

    A ratio row also names its two sides: ``figure`` over ``baseline``, each
    with its own median, min and max from the same run (``figure_value``,
    ``baseline_value``), so a reader of the JSON sees what the ratio compares
    without looking for the rows it came from.
    """

    bench: str
    metric: str
    value: Stat
    unit: str
    target: str = ""
    verdict: str = ""
    figure: str = ""
    figure_value: Stat | None = None
    baseline: str = ""
    baseline_value: Stat | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON data."""
        return attrs.asdict(self)


def verdict(value: float, limit: float, *, higher_is_better: bool) -> str:
    """``met`` or ``missed by N%`` of a median against its target."""
    if (value >= limit) if higher_is_better else (value <= limit):
        return "met"
    shortfall = (limit - value) / limit if higher_is_better else (value - limit) / limit
    return f"missed by {shortfall:.0%}"


Side = tuple[str, Sequence[float]]


def ratio_row(
    bench: str,
    metric: str,
    ratios: Sequence[float],
    limit: float,
    *,
    higher_is_better: bool,
    figure: Side | None = None,
    baseline: Side | None = None,
) -> Row:
    """A row for a same-run ratio with its target (``≥``/``≤`` ``limit``x).

    ``figure`` and ``baseline`` are the two sides' names and per-round values;
    pass them (or use ``ratio_of``) so the row carries its baseline.
    """
    value = stat(ratios)
    sign = "≥" if higher_is_better else "≤"
    return Row(
        bench,
        metric,
        value,
        "x",
        f"{sign} {limit:g}x",
        verdict(value.median, limit, higher_is_better=higher_is_better),
        *_sides(figure, baseline),
    )


def _sides(figure: Side | None, baseline: Side | None) -> tuple[str, Stat | None, str, Stat | None]:
    return (
        figure[0] if figure else "",
        stat(figure[1]) if figure else None,
        baseline[0] if baseline else "",
        stat(baseline[1]) if baseline else None,
    )


def ratio_of(
    bench: str,
    figures: dict[str, list[float]],
    figure: str,
    baseline: str,
    limit: float | None = None,
    *,
    higher_is_better: bool = True,
) -> Row:
    """``figure`` over ``baseline`` round by round (both in ``figures``); a target if ``limit`` is given."""
    ratios = [a / b for a, b in zip(figures[figure], figures[baseline], strict=True)]
    sides = ((figure, figures[figure]), (baseline, figures[baseline]))
    if limit is not None:
        return ratio_row(
            bench,
            f"{figure} / {baseline}",
            ratios,
            limit,
            higher_is_better=higher_is_better,
            figure=sides[0],
            baseline=sides[1],
        )
    return Row(bench, f"{figure} / {baseline}", stat(ratios), "x", "", "", *_sides(*sides))


def interleaved(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run every side once per round, the order rotated each round; each side's figures."""
    names = list(sides)
    results: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(sides[name]())
    return results


def MemoryTransport() -> Any:
    """A transport answering every request with ``TOKEN_BODY`` from memory: no I/O at all."""
    from flowengine import HttpResponse
    from flowengine.testing import MockTransport

    response = HttpResponse(200, {"content-type": "application/json"}, TOKEN_BODY)
    return MockTransport(lambda _request: response)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read())
            model = found.group(1).strip() if found else ""
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {
        "cpus": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_1min_at_start": round(load, 2),
    }


@contextmanager
def server_process(code: str, pattern: str, *, lifetime: float = 900.0) -> Iterator[str]:
    """Run ``code`` in a child Python process until the block ends; yield the URL it prints.

    The child also ends by itself after ``lifetime`` seconds (a watchdog, so a
    benchmark that dies never leaves a server behind), and when its stdin closes.
    """
    watchdog = (
        "import os, sys, threading\n"
        f"threading.Timer({lifetime}, lambda: os._exit(0)).start()\n"
        "threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n"
    )
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, "-c", watchdog + code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        stdout: IO[str] | None = proc.stdout
        assert stdout is not None
        for line in stdout:
            found = re.search(pattern, line)
            if found:
                url = found.group(1)
                break
        else:
            raise RuntimeError(f"the server exited with {proc.wait()} before it started")
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(work: Callable[[], object]) -> float:
    """CPU seconds this process spends in ``work()`` (less noisy than wall time on a shared machine)."""
    began = time.process_time()
    work()
    return time.process_time() - began


def run_alone(run: Callable[[bool], dict[str, Any]], doc: str | None) -> None:
    """``python -m benchmarks.NAME [--quick]``: run one benchmark alone and print its rows."""
    import argparse

    from benchmarks.__main__ import print_rows

    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    print_rows(run(parser.parse_args().quick)["rows"])
