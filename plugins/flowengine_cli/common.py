"""What every terminal command shares: the store option, the presenter, error handling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import click
from flowengine import ConfigError, Flow, FlowError, PluginError, SpecError, Token, hookimpl
from flowengine.cli import EXIT_FAILED, EXIT_USAGE

__all__ = [
    "TerminalPresenter",
    "default_store_url",
    "display_store_url",
    "flow_summary",
    "print_table",
    "printable",
    "run_command",
    "store_option",
    "token_summary",
]

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


def default_store_url() -> str:
    """``FLOWENGINE_STORE``, else the SQLite file in the user's data folder."""
    configured = os.environ.get("FLOWENGINE_STORE")
    if configured:
        return configured
    from flowengine_sqlite import default_url

    return default_url()


def display_store_url(url: str) -> str:
    """A store URL fit to print: no password, no query (it may name a key file)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "memory") or not parts.netloc:
        return url.split("?", 1)[0]
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows under headers with rich: bold headers on a terminal, plain aligned text in a pipe.

    Cells never wrap nor get cut: a key or fingerprint cut short is worse than a wide line.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD if sys.stdout.isatty() else None, pad_edge=False, show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*row)
    if sys.stdout.isatty():
        Console(highlight=False).print(table)
        return
    width = max([len("  ".join(headers)), *(sum(len(c) + 2 for c in row) for row in rows)]) + 8
    console = Console(highlight=False, width=width, soft_wrap=True)
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def store_option(command: _F) -> _F:
    """``--store URL`` (env ``FLOWENGINE_STORE``; default: SQLite in the user data folder)."""
    return click.option(
        "--store",
        metavar="URL",
        default=None,
        help="Store URL: sqlite:///path, redis://…, postgresql://…, memory:// "
        "(env FLOWENGINE_STORE; default $XDG_DATA_HOME/flowengine/flowengine.db).",
    )(command)


def run_command(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Make and run a command's coroutine; turn flowengine errors into messages and exit codes."""
    try:
        return asyncio.run(work())
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_USAGE)
    except (PluginError, ConfigError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except FlowError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


def flow_summary(flow: Flow) -> dict[str, Any]:
    """The public facts of a flow, as JSON-ready data (no secrets, no digests)."""
    return {
        "id": flow.id,
        "spec": flow.spec,
        "state": flow.state,
        "created_at": flow.created_at,
        "expires_at": flow.expires_at,
        "client_id": flow.client_id,
        "redirect_uri": flow.redirect_uri,
        "scope": flow.scope,
        "granted_scope": flow.granted_scope,
        "account": None if flow.account is None else {"type": flow.account.type, "id": flow.account.id},
        "token_key": flow.token_key,
        "token_fingerprint": flow.token_fingerprint,
        "error": None
        if flow.error is None
        else {"code": flow.error.code, "message": flow.error.message, "description": flow.error.description},
        "history": [
            {"at": h.at, "event": h.event, "source": h.source, "dest": h.dest, "error": h.error}
            for h in flow.history
        ],
    }


def token_summary(token: Token) -> dict[str, Any]:
    """The public facts of a token: fingerprints, never the token."""
    return {
        "key": token.key,
        "provider": token.provider,
        "account": {"type": token.account.type, "id": token.account.id},
        "fingerprint": token.fingerprint,
        "token_type": token.token_type,
        "scope": token.scope,
        "obtained_at": token.obtained_at,
        "expires_at": token.expires_at,
        "refreshable": token.refresh_token is not None,
        "dead": token.dead,
    }


class TerminalPresenter:
    """Prints a flow's progress; registered with the plugin manager while a command runs.

    Lines go to stdout, or to stderr when stdout carries JSON (``err=True``).
    While ``status()`` shows a spinner, lines are printed through the same rich
    console, above the spinner, so that neither garbles the other.
    """

    def __init__(self, *, err: bool = False) -> None:
        self.err = err
        self._console: Any = None  # a rich Console while a status line is live

    def echo(self, text: str) -> None:
        """Print one line (to stderr when stdout carries JSON)."""
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(text, err=self.err)

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[None]:
        """Show ``text`` with a spinner while the block runs, on a terminal; a plain line elsewhere."""
        stream = sys.stderr if self.err else sys.stdout
        if not stream.isatty():
            self.echo(text)
            yield
            return
        from rich.console import Console  # rich only when a spinner is shown: it costs start-up time

        console = Console(file=stream, highlight=False)
        with console.status(text, spinner="dots"):
            self._console = console
            try:
                yield
            finally:
                self._console = None

    @hookimpl
    def flowengine_transition(self, flow: Flow, event: str, source: str, dest: str) -> None:
        """Print ``source -> dest (event)`` as each transition is stored."""
        arrow = f"{source} -> {dest}" if source else f"-> {dest}"
        code = f"  [{flow.error.code}]" if flow.error and dest == flow.state else ""
        self.echo(f"  {arrow:<28} ({event}){code}")

    @hookimpl
    def flowengine_present(self, flow: Flow, step: str, detail: Mapping[str, Any]) -> bool | None:
        """Show the authorization step, the result and errors; None lets another presenter try."""
        if step == "authorize":
            self.echo(f"Authorizing at {detail['where']} ({detail.get('how', 'waiting for you')})")
        elif step == "result":
            self.echo(describe_result(flow))
        elif step == "error":
            self.echo(f"Error: {detail['error']}")
        else:
            return None
        return True


def printable(text: str) -> str:
    """Provider text made safe for a terminal: control characters (escape sequences
    that could retitle the window, hide text or fake output) shown as ``\\xNN``."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def describe_result(flow: Flow) -> str:
    """One or two lines saying how a flow ended, for people."""
    if flow.token_fingerprint:
        scope = flow.granted_scope or "unknown"
        lines = [f"Authorized as {flow.account}; token {flow.token_fingerprint}; scope {scope}."]
        if flow.missing_scopes:
            lines.append(f"Not granted: {' '.join(sorted(flow.missing_scopes))}.")
        return "\n".join(lines)
    if flow.error is None:
        return f"Flow ended in state {flow.state!r}."
    said = printable(flow.error.description or flow.error.message)
    return f"Flow {flow.state}: {flow.error.code}: {said}"
