"""A real terminal for tests: tmux on a private server, its pane read as a person sees it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.cli.conftest import ENTRY

__all__ = ["Terminal", "flowengine_command", "needs_tmux", "terminals"]


class Terminal:
    """A tmux session on a private server (``-L``), so no other tmux user is disturbed."""

    def __init__(self, command: str, env: dict[str, str], *, width: int = 200, height: int = 50) -> None:
        self.socket = f"flowengine-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # `exit=$?` tells the test the command's status; the shell then waits to be killed.
        script = f"env {exports} {command}; echo exit=$?; sleep 600"
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), "bash", "--norc", "-c", script)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def screen(self) -> str:
        """The pane's text, wrapped lines joined (-J), as a person reads it."""
        return self.tmux("capture-pane", "-p", "-J")

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        # tmux offers no event for "this text appeared": poll the pane, briefly.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.screen()):
                return match
            time.sleep(0.05)
        pytest.fail(f"{pattern!r} never appeared in the terminal:\n{self.screen()}")

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)  # -l: literally, not as key names
        self.tmux("send-keys", "Enter")

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10, check=False
        )


def terminals() -> Iterator[list[Terminal]]:
    """The body of a ``terminal`` fixture: the terminals a test opens, closed at its end."""
    opened: list[Terminal] = []
    yield opened
    for term in opened:
        term.close()


needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="Debian's tmux (.ci/run installs it)")


def flowengine_command(*args: str) -> str:
    """The `flowengine` command line (at DEBUG level, as tests/cli runs it), quoted for a shell."""
    return " ".join(shlex.quote(a) for a in (sys.executable, "-c", ENTRY, *args))
