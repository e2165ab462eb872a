"""6. Start-up: ``import flowengine`` beside ``import httpx``, and ``flowengine --help``.

``import flowengine`` is read from ``python -X importtime -c "import flowengine"``
(the cumulative time of the ``flowengine`` line), beside the same for ``import
httpx``, measured in the same run; ``flowengine --help`` is the wall time of the
command, beside ``python -c 'import flowengine'`` and ``python -c pass`` (the
interpreter's own start on this machine, site-packages' ``.pth`` files included).
Each is the median of several runs, interleaved; the ratios are taken round by
round.

``import flowengine`` loads no module of the package (each public name is imported
on first use), so its ratio to ``import httpx`` says nothing of what a program pays:
the targets are set on ``python -c 'from flowengine import AsyncEngine'`` (the
package as a program uses it, what ``import flowengine`` loaded before it was lazy)
≤ 1.0x ``python -c 'import httpx'``, and ``--help`` ≤ 1.3x that same command. The
bare-import ratios are shown without a target.

Before timing, one untimed run writes the bytecode of every module the commands
import (even under ``PYTHONDONTWRITEBYTECODE``): an installed package has its
``.pyc`` files, and httpx's in site-packages always do, so a source checkout
compiling itself at each start would not be the same comparison.
Run alone: ``python -m benchmarks.startup [--quick]``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from benchmarks._common import Row, interleaved, ratio_row, run_alone, stat

__all__ = ["run"]

#: The package as a program uses it: the engine and everything it imports.
ENGINE = "from flowengine import AsyncEngine"


def import_ms(package: str = "flowengine") -> float:
    """The ``package`` line of ``-X importtime``: cumulative ms to import the package."""
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-X", "importtime", "-c", f"import {package}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    line = rf"^import time:\s+\d+ \|\s+(\d+) \| {re.escape(package)}$"
    found = re.search(line, done.stderr, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no {package} line in -X importtime's output")
    return int(found.group(1)) / 1000


def write_bytecode() -> None:
    """Run each command once, untimed, allowed to write the ``.pyc`` files of what it imports."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for command in ([sys.executable, "-c", f"import httpx; {ENGINE}"], help_command()):
        subprocess.run(command, capture_output=True, check=True, timeout=60, env=env)  # noqa: S603


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
    """Interleaved runs of each; rows with the same-run ratios and their targets."""
    rounds = 3 if quick else 9
    write_bytecode()
    figures = interleaved(
        rounds,
        {
            "import": import_ms,
            "import_httpx": lambda: import_ms("httpx"),
            "help": lambda: _wall_ms(help_command()),
            "python": lambda: _wall_ms([sys.executable, "-c", "pass"]),
            "import_wall": lambda: _wall_ms([sys.executable, "-c", "import flowengine"]),
            "engine_wall": lambda: _wall_ms([sys.executable, "-c", ENGINE]),
            "httpx_wall": lambda: _wall_ms([sys.executable, "-c", "import httpx"]),
        },
    )
    return {"ms": figures, "rows": rows_of(figures)}


def rows_of(figures: dict[str, list[float]]) -> list[Row]:
    """The table's rows from the interleaved figures (ms per key, one value a round)."""
    imports = (("import", "import flowengine"), ("import_httpx", "import httpx"))
    engine = ("engine_wall", f"python -c '{ENGINE}'")
    return [
        Row("start-up", "import flowengine (-X importtime, cumulative)", stat(figures["import"]), "ms"),
        Row("start-up", "import httpx (-X importtime, cumulative)", stat(figures["import_httpx"]), "ms"),
        _ratio(figures, *imports, suffix=" (-X importtime)"),
        Row("start-up", "flowengine --help (wall)", stat(figures["help"]), "ms"),
        Row("start-up", "python -c 'import flowengine' (wall)", stat(figures["import_wall"]), "ms"),
        _ratio(figures, ("help", "flowengine --help"), ("import_wall", "python -c 'import flowengine'")),
        Row("start-up", f"python -c '{ENGINE}' (wall)", stat(figures["engine_wall"]), "ms"),
        Row("start-up", "python -c 'import httpx' (wall)", stat(figures["httpx_wall"]), "ms"),
        _ratio(figures, engine, ("httpx_wall", "python -c 'import httpx'"), 1.0),
        _ratio(figures, ("help", "flowengine --help"), engine, 1.3),
        Row("start-up", "python -c pass (wall: the interpreter alone)", stat(figures["python"]), "ms"),
    ]


def _ratio(
    figures: dict[str, list[float]],
    figure: tuple[str, str],
    baseline: tuple[str, str],
    limit: float | None = None,
    suffix: str = " (wall)",
) -> Row:
    """``figure`` over ``baseline`` (``(key, command)`` each), round by round; a target if ``limit``."""
    (top, top_name), (bottom, bottom_name) = figure, baseline
    metric = f"{top_name} / {bottom_name}{suffix}"
    ratios = [a / b for a, b in zip(figures[top], figures[bottom], strict=True)]
    over, under = (f"{top_name}{suffix}", figures[top]), (f"{bottom_name}{suffix}", figures[bottom])
    if limit is not None:
        return ratio_row(
            "start-up", metric, ratios, limit, higher_is_better=False, figure=over, baseline=under
        )
    sides = (over[0], stat(over[1]), under[0], stat(under[1]))
    return Row("start-up", metric, stat(ratios), "x", "", "", *sides)


if __name__ == "__main__":
    run_alone(run, __doc__)
