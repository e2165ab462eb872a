"""The state file that makes a batch resumable: its plan, then one line per settled item.

A run killed by Ctrl-C, SIGTERM or worse keeps what it settled: each outcome is
appended (one ``write``, flushed to the OS) the moment the item ends, so even
SIGKILL loses at most the items in flight. A rerun with the same job reads the
plan back (the refresh job re-selects nothing: the plan is what the first run
chose), keeps every settled outcome, and runs only the rest. A run that
completes deletes its state file, so the next run (tomorrow's cron) starts fresh.

The file is JSON lines: a header ``{"flowengine_batch": 1, "job": KEY,
"created_at": T, "plan": [...]}``, then ``ItemResult.to_json()`` lines. It holds
item names and token fingerprints, never a token, code, URL or credential.
It is locked (``flock``) while a run uses it: a second run with the same job
cannot write to it. Item names are account and token names: the file is 0600 and
the folders made for it 0700, whatever the umask (SECURITY.md 15).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from flowengine import ConfigError, make_private_folder

from ._results import ItemResult

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, the rest works
    fcntl = None  # type: ignore[assignment]

__all__ = ["Journal", "JournalBusy", "default_state_dir"]

_FORMAT = 1


class JournalBusy(ConfigError):
    """Another run holds this state file."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"another batch run is using the state file {path}", code="state_busy")


def default_state_dir() -> Path:
    """``$XDG_DATA_HOME/flowengine/batch`` (``~/.local/share/flowengine/batch``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flowengine" / "batch"


class Journal:
    """One run's state file: ``open`` it with the job's key and plan, ``record`` each result."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self.plan: list[dict[str, Any]] = []
        self.created_at: float | None = None

    def open(self, job: str) -> dict[str, ItemResult] | None:
        """Lock the file (once) and read it: the outcomes an earlier run of ``job`` settled, or None.

        None means there is no earlier run: make a plan and ``start`` it. When
        there is one, ``self.plan`` is its plan. A file of another job raises
        ``ConfigError`` (``state_mismatch``); a file in use, ``JournalBusy``.
        """
        self.lock()
        try:
            header, done = self._read()
            if header is None:
                return None
            if header.get("job") != job:
                raise ConfigError(
                    f"the state file {self.path} belongs to another batch job; pass --fresh to discard it "
                    "or --state to use another file",
                    code="state_mismatch",
                )
        except BaseException:
            self.close()
            raise
        self.plan = list(header.get("plan", []))
        self.created_at = header.get("created_at")
        return done

    def lock(self) -> None:
        """Open and lock the file (once); ``JournalBusy`` when another run holds it."""
        if self._fd is not None:
            return
        make_private_folder(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        if os.fstat(fd).st_mode & 0o077:  # a file left by a looser process: make it private
            os.fchmod(fd, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise JournalBusy(self.path) from None
        self._fd = fd

    def start(self, job: str, plan: list[dict[str, Any]]) -> None:
        """Write the header of a new run (after ``open`` found no earlier one)."""
        self.plan = plan
        self.created_at = time.time()
        self._write({"flowengine_batch": _FORMAT, "job": job, "created_at": self.created_at, "plan": plan})

    def _read(self) -> tuple[dict[str, Any] | None, dict[str, ItemResult]]:
        assert self._fd is not None
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        lines = b"".join(chunks).decode("utf-8", "replace").splitlines()
        header: dict[str, Any] | None = None
        done: dict[str, ItemResult] = {}
        for number, line in enumerate(lines):
            try:
                data = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: damage nested thousands deep
                if number == len(lines) - 1:
                    break  # a line torn by a kill mid-write: that item runs again
                raise ConfigError(f"the state file {self.path} is damaged at line {number + 1}") from None
            if number == 0:
                if not isinstance(data, dict) or data.get("flowengine_batch") != _FORMAT:
                    raise ConfigError(
                        f"{self.path} is not a flowengine batch state file", code="state_mismatch"
                    )
                header = data
                continue
            try:
                result = ItemResult.from_json(data, resumed=True)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise ConfigError(f"the state file {self.path} is damaged at line {number + 1}") from None
            if result.done:
                done[result.item] = result
            else:
                done.pop(result.item, None)
        return header, done

    def record(self, result: ItemResult) -> None:
        """Append one settled outcome (one write, so a kill never interleaves two)."""
        self._write(result.to_json())

    def _write(self, data: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError("the journal is not open")
        os.write(self._fd, (json.dumps(data, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        """Flush to disk and unlock; the file stays for a rerun."""
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)  # closing drops the flock
                self._fd = None

    def finish(self) -> None:
        """The run completed: delete the state file."""
        self.path.unlink(missing_ok=True)
        self.close()

    def discard(self) -> None:
        """Throw away a leftover state file (``--fresh``)."""
        self.path.unlink(missing_ok=True)
