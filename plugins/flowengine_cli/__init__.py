"""The terminal frontend: ``flowengine login``, ``flows``, ``tokens`` and ``token header``.

While a command runs, a ``TerminalPresenter`` is registered with the plugin
manager: it prints each stored transition (``flowengine_transition``) and the
steps the command hands to ``flowengine_present``. It prints fingerprints,
never a token, code or secret. Commands default to the SQLite store in the
user's data folder (``FLOWENGINE_STORE`` or ``--store`` choose another).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowengine import hookimpl, lazy_exports

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


# Public names load on first use, not with the plugin (flowengine._plugins.lazy_exports).
__getattr__ = lazy_exports(
    __name__,
    {
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
    },
)


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``login``, ``flows``, ``tokens`` and ``token``."""
    from .header import token
    from .login import login
    from .records import flows, tokens

    for command in (login, flows, tokens, token):
        cli.add_command(command)
