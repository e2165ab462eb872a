"""6. Start-up: ``import flowengine`` and ``flowengine --help``.

``import flowengine`` is read from ``python -X importtime -c "import flowengine"``
(the cumulative time of the ``flowengine`` line), and ``flowengine --help`` is
the wall time of the command, beside ``python -c pass``, the interpreter's own
start on this machine (site-packages' ``.pth`` files included). Each is the
median of several runs, interleaved. Targets: import ≤ 100 ms, ``--help`` ≤ 300 ms.
Run alone: ``python -m benchmarks.startup [--quick]``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from typing import Any

from benchmarks._common import Row, interleaved, run_alone, stat, verdict

__all__ = ["run"]


def import_ms() -> float:
    """The ``flowengine`` line of ``-X importtime``: cumulative ms to import the package."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import flowengine"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = re.search(r"^import time:\s+\d+ \|\s+(\d+) \| flowengine$", done.stderr, re.MULTILINE)
    if found is None:
        raise RuntimeError("no flowengine line in -X importtime's output")
    return int(found.group(1)) / 1000


def _wall_ms(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, timeout=60)  # noqa: S603 - our own commands
    return (time.perf_counter() - began) * 1000


def help_command() -> list[str]:
    """The installed ``flowengine`` script, or the same entry point through this interpreter."""
    script = shutil.which("flowengine")
    return (
        [script, "--help"]
        if script
        else [sys.executable, "-c", "from flowengine.cli import main; main()", "--help"]
    )


def run(quick: bool) -> dict[str, Any]:
    """Interleaved runs of each; rows with the targets."""
    rounds = 3 if quick else 9
    figures = interleaved(
        rounds,
        {
            "import": import_ms,
            "help": lambda: _wall_ms(help_command()),
            "python": lambda: _wall_ms([sys.executable, "-c", "pass"]),
            "import_wall": lambda: _wall_ms([sys.executable, "-c", "import flowengine"]),
        },
    )
    imported, helped = stat(figures["import"]), stat(figures["help"])
    rows = [
        Row(
            "start-up",
            "import flowengine (-X importtime, cumulative)",
            imported,
            "ms",
            "≤ 100 ms",
            verdict(imported.median, 100, higher_is_better=False),
        ),
        Row(
            "start-up",
            "flowengine --help (wall)",
            helped,
            "ms",
            "≤ 300 ms",
            verdict(helped.median, 300, higher_is_better=False),
        ),
        Row("start-up", "python -c 'import flowengine' (wall)", stat(figures["import_wall"]), "ms"),
        Row("start-up", "python -c pass (wall: the interpreter alone)", stat(figures["python"]), "ms"),
    ]
    return {"ms": figures, "rows": rows}


if __name__ == "__main__":
    run_alone(run, __doc__)
