"""5. Spec load and compile: ``load_spec("podio")`` + ``compile_flow``, cold and cached.

Cold is a fresh Python process that has imported flowengine and loads its
first spec: finding the spec folders (which loads the plugins), reading and
validating the YAML, building the machine; each part is timed apart. Cached is
the same call again in a warm process, what every ``AsyncEngine("podio", ...)``
after the first pays. Targets: cold ≤ 20 ms, cached ≤ 50 µs.
Run alone: ``python -m benchmarks.spec_load [--quick]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from benchmarks._common import Row, run_alone, stat, verdict

__all__ = ["run"]

COLD = """
import json, time
import flowengine
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


def cold_once() -> dict[str, float]:
    """One fresh process: seconds spent finding plugins, parsing, compiling."""
    done = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", COLD], capture_output=True, text=True, check=True, timeout=60
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


def run(quick: bool) -> dict[str, Any]:
    """Cold in fresh processes, cached in this one; rows with the targets."""
    rounds = 3 if quick else 7
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
    return {"cold_ms": colds, "cached_us": cached, "rows": rows}


if __name__ == "__main__":
    run_alone(run, __doc__)
