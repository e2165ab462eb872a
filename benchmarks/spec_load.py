"""5. Spec load and compile: ``load_spec("podio")`` + ``compile_flow``, cold and cached.

Cold is a fresh Python process that has imported flowengine (and its engine:
``import flowengine`` alone loads nothing since it became lazy) and loads its
first spec: finding the spec folders (which loads the plugins), reading and
validating the YAML, building the machine; each part is timed apart. Cached is
the same call again in a warm process, what every ``AsyncEngine("podio", ...)``
after the first pays. Hostile is the slowest of a set of documents made to eat the
machine (SECURITY.md 25: an alias bomb, 60 KB of ``[``, a 5,000-digit integer,
the largest documents the limits let through), each refused. Targets: cold ≤ 20 ms,
cached ≤ 50 µs, hostile ≤ 1 s. An untimed first cold run writes the bytecode of the
modules it imports, even under ``PYTHONDONTWRITEBYTECODE`` (as ``benchmarks.startup``
does: an installed package has its ``.pyc`` files).
Run alone: ``python -m benchmarks.spec_load [--quick]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks._common import Row, run_alone, stat, verdict

__all__ = ["run"]

COLD = """
import json, time
import flowengine
from flowengine import AsyncEngine, load_spec  # what `import flowengine` loaded before it was lazy
from flowengine import _plugins as plugins
from flowengine._machine import compile_flow
began = time.perf_counter()
plugins.get_plugin_manager()
found = time.perf_counter()
spec = flowengine.load_spec("podio")
loaded = time.perf_counter()
compile_flow(spec)
compiled = time.perf_counter()
print(json.dumps({"plugins": found - began, "parse": loaded - found, "compile": compiled - loaded}))
"""


def cold_once(*, write_bytecode: bool = False) -> dict[str, float]:
    """One fresh process: seconds spent finding plugins, parsing, compiling."""
    env = {k: v for k, v in os.environ.items() if not (write_bytecode and k == "PYTHONDONTWRITEBYTECODE")}
    done = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", COLD], capture_output=True, text=True, check=True, timeout=60, env=env
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def cached_us(calls: int) -> float:
    """µs per ``load_spec("podio")`` + ``compile_flow`` in a warm process."""
    import flowengine
    from flowengine._machine import compile_flow

    compile_flow(flowengine.load_spec("podio"))
    began = time.perf_counter()
    for _ in range(calls):
        compile_flow(flowengine.load_spec("podio"))
    return (time.perf_counter() - began) / calls * 1e6


def _hostile() -> dict[str, str]:
    """Documents that once took gigabytes or a traceback, and the worst the limits still read."""
    bomb = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    bomb += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 9)]
    size = 64 * 1024 - 64
    return {
        "alias bomb": "\n".join(bomb) + "\n",
        "60 KB of [": "[" * 60_000,
        "5,000-digit integer": "ttl: " + "1" * 5_000,
        "64 KB flow list": ("[" + "a," * size)[:size] + "]",
        "64 KB of keys": "".join(f"k{i}: {i}\n" for i in range(6_000))[:size],
        "64 KB of [ in quotes": "'" + "[" * size,
    }


def hostile_ms() -> float:
    """ms for the slowest hostile document to be refused (each is spec_invalid)."""
    import flowengine

    worst = 0.0
    for text in _hostile().values():
        began = time.perf_counter()
        try:
            flowengine.load_spec(text)
        except flowengine.SpecError:
            pass
        else:
            raise AssertionError("a hostile spec loaded")
        worst = max(worst, time.perf_counter() - began)
    return worst * 1000


def run(quick: bool) -> dict[str, Any]:
    """Cold in fresh processes, cached in this one; rows with the targets."""
    rounds = 3 if quick else 7
    cold_once(write_bytecode=True)
    colds = [cold_once() for _ in range(rounds)]
    totals = [sum(c.values()) * 1000 for c in colds]
    cached = [cached_us(50 if quick else 300) for _ in range(rounds)]
    cold, warm = stat(totals), stat(cached)
    rows = [
        Row(
            "spec load",
            "cold: first load_spec + compile in a fresh process",
            cold,
            "ms",
            "≤ 20 ms",
            verdict(cold.median, 20, higher_is_better=False),
        ),
    ]
    for part, label in (
        ("plugins", "finding the plugins (spec folders)"),
        ("parse", "reading + validating YAML"),
        ("compile", "building the machine"),
    ):
        rows.append(Row("spec load", f"  of which {label}", stat([c[part] * 1000 for c in colds]), "ms"))
    rows.append(
        Row(
            "spec load",
            "cached: load_spec + compile again",
            warm,
            "µs",
            "≤ 50 µs",
            verdict(warm.median, 50, higher_is_better=False),
        )
    )
    hostile = stat([hostile_ms() for _ in range(rounds)])
    rows.append(
        Row(
            "spec load",
            "hostile: the slowest refusal of an alias bomb, 60 KB of [, a 5,000-digit integer, ...",
            hostile,
            "ms",
            "≤ 1000 ms",
            verdict(hostile.median, 1000, higher_is_better=False),
        )
    )
    return {"cold_ms": colds, "cached_us": cached, "hostile_ms": hostile.median, "rows": rows}


if __name__ == "__main__":
    run_alone(run, __doc__)
