"""What every mode of ``flowengine login`` shares: its options, the flow it started, its report.

``Pending`` remembers the flow a login started, so that Ctrl-C, SIGTERM and a
timeout can say truthfully what the store holds; ``report`` prints the result
(or ``--json``) through the terminal presenter and gives the exit status of the
flow's outcome.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal
from urllib.parse import urlsplit

import attrs
import click
from flowengine import (
    AsyncEngine,
    Flow,
    FlowError,
    get_plugin_manager,
)
from flowengine.cli import (
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    Interrupted,
    opened_store,
)

from .common import TerminalPresenter, display_store_url, flow_summary

__all__ = [
    "CALLBACK_PATH",
    "DEFAULT_TIMEOUT",
    "LoginOptions",
    "LoginTimeout",
    "Mode",
    "NothingPasted",
    "Pending",
    "presenting",
    "report",
]

Mode = Literal["emulated", "loopback", "paste", "device"]

DEFAULT_TIMEOUT = "5m"
CALLBACK_PATH = "/callback"


class LoginTimeout(Exception):
    """The person did not come back in time (exit 5)."""


class NothingPasted(Exception):
    """Standard input ended before a callback URL was pasted (exit 4)."""


@attrs.define
class Pending:
    """The flow a login started, once it has: what an ended login reports on."""

    store: str
    flow: Flow | None = None

    def left_behind(self, stored: Flow | None) -> str:
        """What the store holds of this login, given the flow read back from it: said, never guessed."""
        if self.flow is None:
            return "nothing was stored"
        if urlsplit(self.store).scheme == "memory":
            return "nothing was kept (the store is memory://)"
        if stored is None:
            return f"the flow {self.flow.id} may be left in the store: `flowengine flows show {self.flow.id}`"
        if stored.token_key:
            return f"the flow {stored.id} had already finished: the token is stored as {stored.token_key}"
        expires = time.strftime("%H:%M:%S", time.localtime(stored.expires_at))
        return (
            f"no token was stored; the flow {stored.id} stays in the store in state {stored.state!r} "
            f"until it expires at {expires} (`flowengine flows purge` removes it then)"
        )

    def interrupted(self, stop: Interrupted) -> str:
        """The message for Ctrl-C or SIGTERM (``run_command``'s ``cancelled``): the store is read back."""
        stored = None
        if self.flow is not None and urlsplit(self.store).scheme != "memory":
            try:
                stored = asyncio.run(_read_flow(self.store, self.flow.id))
            except (FlowError, OSError):
                stored = None
        how = "Cancelled" if stop.signum == signal.SIGINT else "Terminated (SIGTERM)"
        return f"{how}; {self.left_behind(stored)}."


async def _read_flow(url: str, flow_id: str) -> Flow | None:
    async with opened_store(url, reading=True) as backend:
        return await backend.get(flow_id)


#: The exit status of each outcome (DESIGN.md: 0 granted, 3 denied, 4 failed, 5 timed out).
_EXIT_CODES = {"granted": EXIT_OK, "denied": EXIT_DENIED, "expired": EXIT_TIMEOUT, "failed": EXIT_FAILED}


def _exit_code(flow: Flow) -> int:
    """The exit status of a flow's outcome; a flow still pending is fine."""
    return EXIT_OK if flow.outcome is None else _EXIT_CODES[flow.outcome]


@attrs.frozen
class LoginOptions:
    """What the command line asked for, checked and with defaults applied."""

    mode: Mode
    scope: str | None
    store: str
    as_json: bool
    pending: Pending
    approve: bool = True
    timeout: float = 300.0
    open_browser: bool = True
    redirect_uri: str | None = None
    port: int | None = None
    #: The spec's connection values (``--connection``), checked by the engine at start.
    connection: dict[str, str] = attrs.field(factory=dict)


@contextmanager
def presenting(as_json: bool) -> Iterator[TerminalPresenter]:
    pm = get_plugin_manager()
    presenter = TerminalPresenter(err=as_json)
    pm.register(presenter, name="flowengine-terminal")
    try:
        yield presenter
    finally:
        pm.unregister(presenter)


def report(engine: AsyncEngine, flow: Flow, options: LoginOptions, presenter: TerminalPresenter) -> int:
    if options.as_json:
        click.echo(json.dumps(flow_summary(flow), indent=2))
    else:
        engine.present(flow, "result")
        if flow.token_key and options.mode != "emulated":
            presenter.echo(f"Token stored as {flow.token_key} in {display_store_url(options.store)}.")
    return _exit_code(flow)
