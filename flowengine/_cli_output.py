"""Where a command's output goes: the files it is told to write, and a stdout that fails.

A file named on the command line (``spec graph -o``, ``batch --report``) is
checked before the command does any work, so that nothing is lost to a typo
in its folder, and written under the same guard: either way a file that
cannot be written is one ``Error: output_unwritable: cannot write …`` line,
exit 2. A stdout that cannot be written (``> /dev/full``) gives the same line;
a reader that went away (``| head``) ends the command quietly with 141, as a
program stopped by SIGPIPE does. Neither leaves a traceback, nor Python's
"Exception ignored" line at exit.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowengine._cli_common import EXIT_INTERRUPTED, fail
from flowengine._errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "EXIT_BROKEN_PIPE",
    "Commands",
    "check_writable",
    "stop_if_stdout_failed",
    "unwritable",
    "watch_stdout",
    "write_output",
]

#: What the shell reports for a program stopped by SIGPIPE: its reader went away (``| head``).
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def unwritable(target: str | Path, reason: str) -> ConfigError:
    """The error for an output that cannot be written (``output_unwritable``, exit 2)."""
    return ConfigError(f"cannot write {target}: {reason}", code="output_unwritable")


def check_writable(path: Path) -> None:
    """Refuse (``output_unwritable``) a file that cannot be written, before any work is done.

    Its folder must exist (it is not created: a typo there should not make
    folders) and be writable; the file itself, when it exists, must be a
    writable file.
    """
    try:
        _check_writable(path)
    except OSError as exc:  # a name too long for the file system, a loop of links
        raise unwritable(path, exc.strerror or str(exc)) from None


def _check_writable(path: Path) -> None:
    folder = path.parent
    if path.is_dir():
        raise unwritable(path, "it is a folder")
    if not folder.is_dir():
        missing = "is not a folder" if folder.exists() else "does not exist"
        raise unwritable(path, f"the folder {folder} {missing}")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise unwritable(path, "permission denied")


def write_output(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (checked first); an ``OSError`` becomes ``output_unwritable``."""
    check_writable(path)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise unwritable(path, exc.strerror or str(exc)) from None


class _WatchedStdout(io.FileIO):
    """stdout's descriptor, keeping the error of a failed write: so an ``OSError`` is known to be stdout's."""

    failed: OSError | None = None

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            self.failed = exc
            raise


_watched: list[_WatchedStdout] = []


def watch_stdout() -> None:
    """Put ``sys.stdout`` over a descriptor that keeps a failed write's error (the script does, once)."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # not a real file: nothing to watch
        return
    sys.stdout.flush()
    raw = _WatchedStdout(descriptor, "w", closefd=False)
    _watched.append(raw)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=sys.stdout.encoding,
        errors=sys.stdout.errors,
        line_buffering=bool(sys.stdout.line_buffering),
    )


def _stdout_error(raised: OSError | None) -> OSError | None:
    """stdout's failed write: the watched one's, else (click's test runner) a flush that still fails."""
    if _watched:
        return _watched[-1].failed
    try:
        sys.stdout.flush()
    except OSError as exc:
        return raised or exc
    return None


def _silence_stdout() -> None:
    """Point stdout's descriptor at the null device, so that the flush at exit cannot fail again."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (click's test runner): nothing flushes at exit
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)


def stop_if_stdout_failed(raised: OSError | None = None) -> None:
    """End the command when a write to stdout failed; return when stdout is fine.

    ``raised`` is an error a command raised (it may be another file's). Without
    it, what is left in stdout's buffer is flushed first (the end of a command).
    """
    if raised is None:
        with contextlib.suppress(OSError):  # a failure is kept by the watcher (or still fails below)
            sys.stdout.flush()
    exc = _stdout_error(raised)
    if exc is None:
        return
    _silence_stdout()
    if exc.errno == errno.EPIPE:
        sys.exit(EXIT_BROKEN_PIPE)
    fail(unwritable("to stdout", exc.strerror or str(exc)))


class Commands(click.Group):
    """The ``flowengine`` group: a Ctrl-C or a failing stdout ends any command in one line.

    click alone would print ``Aborted!`` and exit 1 for a Ctrl-C that a command
    does not handle itself (``doctor``, ``spec graph``).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort) as stop:
            if isinstance(stop, click.Abort) and not isinstance(stop.__context__, KeyboardInterrupt):
                raise  # a prompt's own abort (click.confirm answered no)
            click.echo("\nCancelled.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            stop_if_stdout_failed(exc)
            raise
