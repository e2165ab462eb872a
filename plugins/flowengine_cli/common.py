"""What the terminal commands share: the presenter, tables, and the public facts of records.

What every command of the `flowengine` script shares (the store option, error
printing, durations, credentials) is the core's: ``flowengine.cli``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import click
from flowengine import Flow, Outcome, Token, hookimpl
from flowengine.cli import printable

__all__ = [
    "TerminalPresenter",
    "ago",
    "display_store_url",
    "flow_summary",
    "print_table",
    "printable",
    "token_summary",
]


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
    """Print rows under headers: a rich table on a terminal, plain aligned columns in a pipe.

    Cells never wrap nor get cut, whatever the width: a key or fingerprint cut
    short is worse than a wide line. In a pipe the columns are two spaces apart
    and lines carry no trailing spaces, so ``awk``/``cut`` read them. Every cell
    goes through ``printable``: an account or a scope is the provider's text.
    """
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    if not sys.stdout.isatty():
        for line in (headers, *rows):
            click.echo(
                "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            )
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console = Console(highlight=False)
    # Never narrower than the table needs: a narrow terminal wraps the line, rich would cut cells.
    console.width = max(console.width, sum(widths) + 2 * len(widths) + 2)
    console.print(table)


def flow_summary(flow: Flow) -> dict[str, Any]:
    """The public facts of a flow, as JSON-ready data (no secrets, no digests)."""
    return {
        "id": flow.id,
        "spec": flow.spec,
        "state": flow.state,
        "outcome": flow.outcome,
        "created_at": flow.created_at,
        "expires_at": flow.expires_at,
        "client_id": flow.client_id,
        "redirect_uri": flow.redirect_uri,
        "scope": flow.scope,
        "granted_scope": flow.granted_scope,
        "account": None if flow.account is None else {"type": flow.account.type, "id": flow.account.id},
        "connection": dict(flow.connection),
        "kept": dict(flow.kept),
        "token_key": flow.token_key,
        "token_fingerprint": flow.token_fingerprint,
        "claims": dict(flow.claims),
        "device": None
        if flow.device is None
        else {
            "user_code": flow.device.user_code,
            "verification_uri": flow.device.verification_uri,
            "verification_uri_complete": flow.device.verification_uri_complete,
            "interval": flow.device.interval,
        },
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
        "connection": dict(token.connection),
        "kept": dict(token.kept),
        "spec_source": token.spec_source,
        "fingerprint": token.fingerprint,
        "token_type": token.token_type,
        "scope": token.scope,
        "obtained_at": token.obtained_at,
        "expires_at": token.expires_at,
        "refreshable": token.refresh_token is not None,
        "dead": token.dead,
        "dead_at": token.dead_at,
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
        """Print one line or more (to stderr when stdout carries JSON), each through ``printable``."""
        text = "\n".join(printable(line) for line in text.split("\n"))
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

    # trylast: the terminal is the fallback; a presenter plugin (a QR code, a desktop
    # notification) registered by anyone else shows a step of `flowengine login` first.
    @hookimpl(trylast=True)
    def flowengine_present(self, flow: Flow, step: str, detail: Mapping[str, Any]) -> bool | None:
        """Show the authorization step, the result and errors; None lets another presenter try."""
        if step == "authorize":
            self.echo(f"Authorizing at {detail['where']} ({detail.get('how', 'waiting for you')})")
        elif step == "result":
            self.echo(describe_result(flow))
        elif step == "error":
            self.echo(printable(f"Error: {detail['error']}"))
        else:
            return None
        return True


def describe_result(flow: Flow) -> str:
    """One or two lines saying how a flow ended (its ``outcome``), for people."""
    if flow.outcome == Outcome.GRANTED:
        scope = flow.granted_scope or "unknown"
        who = flow.claims.get("email") or flow.claims.get("preferred_username")  # an OpenID login's
        named = f" ({printable(who)})" if isinstance(who, str) else ""
        account, scope = printable(str(flow.account)), printable(scope)  # both are the provider's words
        lines = [f"Authorized as {account}{named}; token {flow.token_fingerprint}; scope {scope}."]
        if flow.missing_scopes:
            lines.append(f"Not granted: {printable(' '.join(sorted(flow.missing_scopes)))}.")
        return "\n".join(lines)
    if flow.outcome is None:
        return f"Flow waiting in state {flow.state!r}."
    if flow.error is None:
        return f"Flow {flow.outcome} in state {flow.state!r}."
    said = printable(flow.error.description or flow.error.message)
    return f"Flow {flow.state}: {flow.error.code}: {said}"


def ago(when: float | None, now: float) -> str:
    """``in 25m``, ``47m ago``, ``5.6h ago``, ``2.0d ago`` (``never`` for None): times in tables."""
    if when is None:
        return "never"
    delta = when - now
    span = abs(delta)
    if span >= 86400:
        text = f"{span / 86400:.1f}d"
    elif span >= 3600:
        text = f"{span / 3600:.1f}h"
    else:
        text = f"{span / 60:.0f}m" if span >= 120 else f"{span:.0f}s"
    return f"in {text}" if delta >= 0 else f"{text} ago"
