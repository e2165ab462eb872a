"""The terminal frontend: ``flowengine login``, ``flows``, ``tokens``, ``token header`` and ``status``.

While a command runs, a ``TerminalPresenter`` is registered with the plugin
manager: it prints each stored transition (``flowengine_transition``) and the
steps the command hands to ``flowengine_present``. It prints fingerprints,
never a token, code or secret. What every command shares (the store option,
the default store, error printing, credentials) is the core's ``flowengine.cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowengine import hookimpl, lazy_exports

if TYPE_CHECKING:
    import click

    from .common import TerminalPresenter, flow_summary, token_summary
    from .loopback import LoopbackListener, Reply
    from .modes import callback_problem

__all__ = [
    "LoopbackListener",
    "Reply",
    "TerminalPresenter",
    "callback_problem",
    "flow_summary",
    "flowengine_commands",
    "token_summary",
]


# Public names load on first use, not with the plugin (flowengine._plugins.lazy_exports).
__getattr__ = lazy_exports(
    __name__,
    {
        "TerminalPresenter": ".common",
        "flow_summary": ".common",
        "token_summary": ".common",
        "callback_problem": ".modes",
        "LoopbackListener": ".loopback",
        "Reply": ".loopback",
    },
)


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``login``, ``flows``, ``tokens``, ``token``, ``status`` and ``doctor``."""
    from .doctor import doctor
    from .header import token
    from .login import login
    from .records import flows, tokens
    from .status import status

    for command in (login, flows, tokens, token, status, doctor):
        cli.add_command(command)
