"""The terminal frontend: ``flowengine login``, ``flowengine flows``, ``flowengine tokens``.

While a command runs, a ``TerminalPresenter`` is registered with the plugin
manager: it prints each stored transition (``flowengine_transition``) and the
steps the command hands to ``flowengine_present``. It prints fingerprints,
never a token, code or secret. Commands default to the SQLite store in the
user's data folder (``FLOWENGINE_STORE`` or ``--store`` choose another).
"""

from __future__ import annotations

import click
from flowengine import hookimpl

from .common import TerminalPresenter, default_store_url, flow_summary, token_summary
from .login import login
from .records import flows, tokens

__all__ = [
    "TerminalPresenter",
    "default_store_url",
    "flow_summary",
    "flowengine_commands",
    "token_summary",
]


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``login``, ``flows`` and ``tokens``."""
    for command in (login, flows, tokens):
        cli.add_command(command)
