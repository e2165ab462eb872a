"""Running the `flowengine` command as a person does: a separate process, read line by line."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import attrs
import pytest

from tests.conftest import SandboxFixture

#: Runs the CLI exactly as the installed script does, with every logger at DEBUG
#: (so that a test can prove nothing secret is logged even then).
ENTRY = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG); from flowengine.cli import main; main()"
)
AUTHORIZE_URL = re.compile(r"https?://\S+/oauth/authorize\?\S+")


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", ENTRY, *args]


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        input=stdin,
        check=False,
    )


@attrs.frozen
class Ran:
    """What an in-process run printed, shaped like ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


class _ToStderr(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record comes: click's runner swaps it in."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


#: How a separate process's logging reaches its stderr: as ``run``'s entry configures it
#: (``logging.basicConfig(level=DEBUG)``), or, configured by nobody, Python's last resort
#: (warnings and errors, the bare message).
LOGS = {"debug": (logging.DEBUG, logging.BASIC_FORMAT), "unconfigured": (logging.WARNING, "%(message)s")}


@contextlib.contextmanager
def _logging_to_stderr(logs: Literal["debug", "unconfigured"] | None) -> Iterator[None]:
    if logs is None:
        yield
        return
    level, form = LOGS[logs]
    handler, root = _ToStderr(level), logging.getLogger()
    handler.setFormatter(logging.Formatter(form))
    before = root.level
    root.addHandler(handler)
    root.setLevel(min(level, before))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


def invoke(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    logs: Literal["debug", "unconfigured"] | None = None,
) -> Ran:
    """Run the command in this process (click's runner): the same commands, without a start-up.

    For tests about what a command does; the ones about processes, terminals
    and sockets use ``run`` or ``Running``. ``logs`` sends the log records to
    stderr as a separate process would (``LOGS``), so a test that counts
    stderr's lines counts the log lines that ``run`` would show too.
    """
    from click.testing import CliRunner
    from flowengine import _plugins as plugins
    from flowengine.cli import cli

    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    with _logging_to_stderr(logs):
        result = CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


class Running:
    """A `flowengine` process whose output is read line by line, as it is printed.

    ``wait_for`` watches stdout and stderr alike (``--json`` moves progress to
    stderr); ``finish`` gives each stream whole.
    """

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            cli_command(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.out: list[str] = []
        self.err: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, kept), daemon=True)
            for stream, kept in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: IO[str], kept: list[str]) -> None:
        for line in stream:
            kept.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 20) -> re.Match[str]:
        """The first match of ``pattern`` in the lines printed so far or next; fails on exit or timeout."""
        for line in self.seen:
            if match := pattern.search(line):
                return match
        ended = 0
        while ended < 2:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern.pattern!r} within {timeout}s; saw {self.seen}")
            if line is None:
                ended += 1
                continue
            self.seen.append(line)
            if match := pattern.search(line):
                return match
        pytest.fail(f"the command ended before printing {pattern.pattern!r}; saw {self.seen}")

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        """Exit status, all of stdout, all of stderr."""
        code = self.process.wait(timeout)
        for pump in self._pumps:
            pump.join(timeout)
        return code, "".join(self.out), "".join(self.err)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def env(sandbox: SandboxFixture, tmp_path: Path) -> dict[str, str]:
    """The session's sandbox and a store of this test's own."""
    return {"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_STORE": f"sqlite://{tmp_path}/fe.db"}


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Processes a test starts; killed at the end whatever happened."""
    started: list[Running] = []
    yield started
    for process in started:
        process.kill()


def local_spec(tmp_path: Path, sandbox_url: str) -> Path:
    """podio.yaml pointed at the sandbox (``local_only``): a "real provider" that needs real credentials."""
    text = (Path(__file__).resolve().parents[2] / "specs" / "podio.yaml").read_text(encoding="utf-8")
    text = text.replace("https://podio.com", sandbox_url).replace("https://api.podio.com", sandbox_url)
    path = tmp_path / "podio.yaml"
    path.write_text("local_only: true\n" + text, encoding="utf-8")
    return path


@pytest.fixture
def terminal() -> Iterator[list[Any]]:
    """Terminals (tests.support.terminal.Terminal) a test opens; closed at its end."""
    from tests.support.terminal import terminals

    yield from terminals()
