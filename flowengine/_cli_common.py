"""What every command of the ``flowengine`` script shares, whichever plugin adds it.

Exit statuses, the ``--store`` option and the default store, how errors are
printed (``Error: CODE: MESSAGE`` on stderr, spec problems one per line),
durations, and the running sandbox's URL. Plugins reach these through
``flowengine.cli``, so two frontends never drift apart in what they print.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import click

from flowengine._errors import ConfigError, FlowError, PluginError, SpecError, StoreError
from flowengine._plugins import open_store
from flowengine._store import Store
from flowengine._urls import UrlRefused, judge

__all__ = [
    "EXIT_DENIED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "SANDBOX_URL_ENV",
    "STORE_ENV",
    "Interrupted",
    "default_store_url",
    "exit_status",
    "fail",
    "format_duration",
    "opened_store",
    "parse_duration",
    "print_error",
    "printable",
    "run_command",
    "sandbox_url",
    "store_option",
    "store_url",
]

EXIT_OK, EXIT_USAGE, EXIT_DENIED, EXIT_FAILED, EXIT_TIMEOUT = 0, 2, 3, 4, 5
#: The shell's convention for a command ended by Ctrl-C (128 + SIGINT); SIGTERM gives 143.
EXIT_INTERRUPTED = 128 + signal.SIGINT
STORE_ENV = "FLOWENGINE_STORE"
SANDBOX_URL_ENV = "FLOWENGINE_SANDBOX_URL"

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


# --- the store -----------------------------------------------------------------------


def default_store_url() -> str:
    """``FLOWENGINE_STORE``, else ``sqlite://$XDG_DATA_HOME/flowengine/flowengine.db`` (absolute).

    A plain URL: which plugin opens it is ``open_store``'s business. ``XDG_DATA_HOME``
    defaults to ``~/.local/share``; a relative value is ignored, as the XDG Base
    Directory specification asks.
    """
    configured = os.environ.get(STORE_ENV)
    if configured:
        return configured
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return "sqlite://" + str(root / "flowengine" / "flowengine.db")


def store_option(command: _F) -> _F:
    """``--store URL`` (env ``FLOWENGINE_STORE``; default: SQLite in the user data folder)."""
    return click.option(
        "--store",
        metavar="URL",
        default=None,
        help="Store URL: sqlite:///path, redis://…, postgresql://…, memory:// "
        "(env FLOWENGINE_STORE; default $XDG_DATA_HOME/flowengine/flowengine.db).",
    )(command)


def store_url(given: str | None) -> str:
    """The store URL a command uses: ``--store``, else the default; a bare path is refused with a hint.

    ``./x.db`` is not a URL, and ``open_store`` would only say that no plugin
    handles it: the error here says how to write the SQLite URL instead.
    """
    url = given or default_store_url()
    if "://" not in url:
        suggestion = "sqlite://" + str(Path(url).expanduser().absolute())
        raise PluginError(
            f"{url!r} is not a store URL (sqlite://, redis://, postgresql://, memory://): "
            f"for a SQLite file write {suggestion}",
            code="store_unsupported",
        )
    return url


def _sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite://`` URL names (read as the SQLite plugin reads it), else None."""
    if not url.startswith("sqlite://"):
        return None
    raw = url[len("sqlite://") :].partition("?")[0]
    return Path(raw).expanduser().absolute() if raw else None


@contextlib.asynccontextmanager
async def opened_store(given: str | None, *, reading: bool = False) -> AsyncIterator[Store]:
    """The store ``--store`` names (or the default), closed when the command is done with it.

    With ``reading``, a SQLite file that does not exist yet is neither created
    nor are its folders: an empty memory store stands in, since there is
    nothing to read. The URL is still opened first, so a malformed one is refused.
    """
    url = store_url(given)
    store = open_store(url)
    path = _sqlite_file(url)
    try:
        missing = path is not None and not path.exists()
    except OSError as exc:  # a name too long for the file system, a loop of links
        await store.aclose()
        why = exc.strerror or str(exc)
        raise ConfigError(f"the SQLite store {path}: {why}", code="store_url_invalid") from None
    if reading and missing:
        await store.aclose()
        store = open_store("memory://")
    refusing = _WrongKey()
    logging.getLogger("flowengine.store").addHandler(refusing)
    try:
        yield store
    except StoreError as exc:
        if exc.code != "store_corrupt" or _WRONG_KEY not in exc.message:
            raise
        raise StoreError(
            f"{exc.message}: the store is sealed with another key; give the key its records were "
            "sealed with (FLOWENGINE_KEY, or ?key_file=PATH in the store URL)",
            code="store_corrupt",
            retryable=False,
        ) from None
    finally:
        logging.getLogger("flowengine.store").removeHandler(refusing)
        await store.aclose()


_WRONG_KEY = "cannot be decrypted with this key"


class _WrongKey(logging.Handler):
    """Turns a record that a store's listing would skip as sealed with another key into ``store_corrupt``.

    A library listing skips (and logs) such records; a command must not print an
    empty table, nor say a token is unknown, when the key it was given is the wrong one
    (docs/stores.md: a store opened with the wrong key refuses with ``store_corrupt``).
    The store's warning is raised from here, inside the listing that logs it; ``opened_store``
    says what to do, as it does when a single record read (``get``) is refused the same way.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if _WRONG_KEY in message:
            start = message.find("stored ")  # "… skipped a record: stored token 'k' …"
            message = message[start:] if start >= 0 else message
            raise StoreError(message, code="store_corrupt", retryable=False)  # opened_store adds the fix


# --- errors and exit statuses ----------------------------------------------------------


class Interrupted(Exception):
    """The command was stopped by a signal (SIGINT: Ctrl-C, or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def status(self) -> int:
        """128 + the signal's number, as a shell reports it."""
        return 128 + self.signum


def exit_status(exc: FlowError) -> int:
    """2 for what the person can fix in the command (spec, plugin, config), 4 for the rest."""
    return EXIT_USAGE if isinstance(exc, SpecError | PluginError | ConfigError) else EXIT_FAILED


def printable(text: str) -> str:
    """Text from outside (a provider, an exception, a file) made safe for a terminal.

    Every character that is not printable (ESC and the escape sequences it starts,
    BEL, CR, LF, C1 controls such as CSI, bidirectional overrides) is shown as its
    Python escape (``\\x1b``), so provider text cannot retitle the window, erase
    the screen, hide text or fake a line of output (SECURITY 7). Applying it twice
    changes nothing.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def print_error(exc: FlowError) -> None:
    """``Error: CODE: MESSAGE`` on stderr; a spec's problems one per line as ``SOURCE: PATH: MESSAGE``.

    Everything printed goes through ``printable``: a message may quote a provider.
    """
    if isinstance(exc, SpecError):
        for problem in exc.problems:
            click.echo(printable(str(problem)), err=True)
        return
    click.echo(printable(f"Error: {exc.code}: {exc.message}"), err=True)


def fail(exc: FlowError) -> NoReturn:
    """Print ``exc`` as every command does and exit with its status."""
    print_error(exc)
    sys.exit(exit_status(exc))


async def _until_sigterm(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``work``; SIGTERM cancels it as Ctrl-C does, and raises ``Interrupted`` once it unwound."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated: list[int] = []

    def on_sigterm() -> None:
        terminated.append(signal.SIGTERM)
        if task is not None:
            task.cancel()

    handled = False
    previous = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        handled = True
    try:
        return await work()
    except asyncio.CancelledError:
        if terminated:
            raise Interrupted(signal.SIGTERM) from None
        raise
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)  # asyncio leaves the default: the script's own again


def run_command(
    work: Callable[[], Coroutine[Any, Any, _T]],
    *,
    cancelled: Callable[[Interrupted], str] | None = None,
) -> _T:
    """Run a command's coroutine; turn flowengine errors and signals into messages and exit statuses.

    ``cancelled`` says what to print when Ctrl-C or SIGTERM stops the command
    (default: ``Cancelled.``); the exit status is then 128 + the signal.
    """
    try:
        try:
            return asyncio.run(_until_sigterm(work))
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT) from None
    except Interrupted as stop:
        said = cancelled(stop) if cancelled is not None else "Cancelled."
        click.echo(f"\n{said}" if stop.signum == signal.SIGINT else said, err=True)
        sys.exit(stop.status)
    except FlowError as exc:
        fail(exc)


# --- durations ----------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``1h``, ``2d`` (or a bare number of seconds); click's usage error else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise click.BadParameter(
            f"{text!r} is not a duration like 90s, 30m, 1h or 2d", param_hint=_option_given(text)
        )
    return float(match[1]) * _UNITS[match[2] or "s"]


def _option_given(value: str) -> str | None:
    """The option of the running command that was given ``value`` (``'--timeout'``), to name in an error."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    for param in ctx.command.params:
        if isinstance(param, click.Option) and ctx.params.get(param.name or "") == value:
            return "/".join(repr(opt) for opt in param.opts)
    return None


def format_duration(seconds: float) -> str:
    """``5m``, ``90s``, ``1h``, ``1h30m``: the way durations are written on the command line."""
    whole = round(seconds)
    if whole < 60 or whole % 60:
        return f"{whole}s" if whole < 60 else f"{whole // 60}m{whole % 60}s"
    minutes = whole // 60
    if minutes < 60 or minutes % 60:
        return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60}m"
    return f"{minutes // 60}h"


# --- the running sandbox ------------------------------------------------------------------


def sandbox_url(*, needed_for: str | None = None) -> str | None:
    """``FLOWENGINE_SANDBOX_URL``, checked: an ``http://host[:port]`` URL, or None when unset.

    ``needed_for`` (``"tokens refresh --sandbox"``) makes an unset variable an
    error that says how to start a sandbox and point at it. Every problem is a
    ``PluginError`` with code ``sandbox_unreachable`` (exit 2).
    """
    value = os.environ.get(SANDBOX_URL_ENV, "").strip()
    if not value:
        if needed_for is None:
            return None
        raise PluginError(
            f"{needed_for} works with the running sandbox that issued the tokens, and "
            f"{SANDBOX_URL_ENV} is not set: start `flowengine sandbox serve` and "
            f"export {SANDBOX_URL_ENV}=http://127.0.0.1:8790",
            code="sandbox_unreachable",
        )
    try:
        parts = urlsplit(value)
        has_host = bool(parts.hostname)
    except ValueError:
        parts, has_host = urlsplit(""), False
    if parts.scheme != "http" or not has_host:
        hint = f": write http://{value}" if "://" not in value else ""
        if parts.scheme == "https" and has_host:
            hint = f": a sandbox serves plain http, write http://{value[len('https://') :]}"
        raise PluginError(
            f"{SANDBOX_URL_ENV}={value!r} is not an http:// URL{hint}", code="sandbox_unreachable"
        )
    try:
        judge(value)  # what a browser (and the transport) would make of it
        (parts.hostname or "").encode("idna")  # labels of at most 63 characters, valid xn-- forms
    except (UrlRefused, UnicodeError) as exc:
        why = exc.message if isinstance(exc, UrlRefused) else "its host name is not a valid DNS name"
        raise PluginError(f"{SANDBOX_URL_ENV}={value!r}: {why}", code="sandbox_unreachable") from None
    return value.rstrip("/")
