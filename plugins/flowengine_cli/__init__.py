"""The terminal frontend: ``flowengine login``, ``flows``, ``tokens`` and ``token header``.

While a command runs, a ``TerminalPresenter`` is registered with the plugin
manager: it prints each stored transition (``flowengine_transition``) and the
steps the command hands to ``flowengine_present``. It prints fingerprints,
never a token, code or secret. Commands default to the SQLite store in the
user's data folder (``FLOWENGINE_STORE`` or ``--store`` choose another).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowengine import hookimpl

if TYPE_CHECKING:
    import click

    from .common import TerminalPresenter, default_store_url, flow_summary, token_summary
    from .credentials import config_path, load_config, resolve_client
    from .login import callback_problem
    from .loopback import LoopbackListener, Reply

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


# Every installed plugin is imported whenever plugins are looked up (even to find a
# spec): the names below are imported on first use, not with the plugin.
_LAZY = {
    "TerminalPresenter": ".common",
    "default_store_url": ".common",
    "flow_summary": ".common",
    "token_summary": ".common",
    "config_path": ".credentials",
    "load_config": ".credentials",
    "resolve_client": ".credentials",
    "callback_problem": ".login",
    "LoopbackListener": ".loopback",
    "Reply": ".loopback",
}


def __getattr__(name: str) -> Any:
    """Import a public name of this plugin on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``login``, ``flows``, ``tokens`` and ``token``."""
    from .header import token
    from .login import login
    from .records import flows, tokens

    for command in (login, flows, tokens, token):
        cli.add_command(command)
