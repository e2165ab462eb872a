"""Ctrl-C and SIGTERM at any moment of a command, start-up included: one line, 130 or 143, never a traceback.

The console script is run as installed (its entry point, loaded from the package's
metadata). The signal is sent by the process to itself at a chosen point: when
Python looks for a module it imports there (a finder placed first on
``sys.meta_path``), so the test is exact and waits for nothing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import flowengine_entry
from tests.cli.conftest import Running

#: The console script's function, with the signal SIGNAL sent when MODULE is first looked for.
SCRIPT = """
import os, signal, sys
from importlib.metadata import entry_points

signum, module, *args = sys.argv[1:]


class SignalWhenImported:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), getattr(signal, signum))
        return None


main = entry_points(group="console_scripts")["flowengine"].load()
sys.meta_path.insert(0, SignalWhenImported())
sys.argv = ["flowengine", *args]
main()
"""


def signalled(signum: str, module: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, signum, module, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_the_console_script_is_the_small_entry_module_that_imports_flowengine_itself() -> None:
    [script] = [e for e in entry_points(group="console_scripts") if e.name == "flowengine"]
    assert script.value == "flowengine_entry:main"
    source = Path(flowengine_entry.__file__).read_text(encoding="utf-8")
    imports = re.findall(r"^(?:import|from) (\S+)", source, re.MULTILINE)
    assert set(imports) == {"__future__", "signal", "sys", "types"}  # flowengine only inside main()


@pytest.mark.parametrize(
    ("signum", "status", "line"),
    [
        ("SIGINT", 130, "Cancelled before the command started; nothing was done."),
        ("SIGTERM", 143, "Terminated (SIGTERM) before the command started; nothing was done."),
    ],
)
@pytest.mark.parametrize("command", [["status", "--store", "memory://"], ["spec", "graph", "podio"]])
def test_a_signal_while_flowengine_loads_is_one_line(
    signum: str, status: int, line: str, command: list[str], tmp_path: Path
) -> None:
    # flowengine._spec is imported deep inside `import flowengine`, long before any command runs.
    result = signalled(signum, "flowengine._spec", *command, home=tmp_path)
    assert (result.returncode, result.stderr.strip(), result.stdout) == (status, line, "")


@pytest.mark.parametrize(
    ("signum", "status", "line"), [("SIGINT", 130, "Cancelled."), ("SIGTERM", 143, "Terminated (SIGTERM).")]
)
def test_a_signal_while_doctor_runs_is_the_documented_line_not_clicks_aborted(
    signum: str, status: int, line: str, tmp_path: Path
) -> None:
    # doctor reads the config file with tomllib, imported when that check runs.
    result = signalled(signum, "tomllib", "doctor", "--store", "memory://", home=tmp_path)
    assert result.returncode == status, result.stderr
    assert result.stderr.strip().splitlines() == [line]
    assert "Aborted!" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sandbox_serve_stops_on_either_signal_with_0(signum: int, running: list[Running]) -> None:
    """A server runs until stopped: a signal is its normal end (docs/cli.md's exception to 130/143)."""
    server = Running("sandbox", "serve", "--port", "0", env={})
    running.append(server)
    server.wait_for(re.compile(r"Podio sandbox on http://127\.0\.0\.1:\d+"))
    server.process.send_signal(signum)
    status, _out, err = server.finish()
    assert status == 0, err
    assert "Traceback" not in err
