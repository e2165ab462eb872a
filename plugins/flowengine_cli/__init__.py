"""The terminal frontend: ``flowengine login``, ``flows``, ``tokens`` and ``token header``.

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
from .credentials import config_path, load_config, resolve_client
from .header import token
from .login import callback_problem, login
from .loopback import LoopbackListener, Reply
from .records import flows, tokens

__all__ = [
    "LoopbackListener",
    "Reply",
    "TerminalPresenter",
    "callback_problem",
    "config_path",
    "default_store_url",
    "flow_summary",
    "flowengine_commands",
    "load_config",
    "resolve_client",
    "token_summary",
]


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``login``, ``flows``, ``tokens`` and ``token``."""
    for command in (login, flows, tokens, token):
        cli.add_command(command)
