"""Every hook flowengine calls, one docstring each.

Hooks are synchronous factories and observers (pluggy is synchronous); the
objects they return (a Store, a Transport, a Sandbox) have async methods.
A plugin implements any of them with ``@flowengine.hookimpl`` and registers
its module under the ``flowengine`` entry-point group. Each hook has a test
named after it and an entry in ``docs/plugins.md``; a test checks both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from flowengine._events import RefreshQueue, RequestEvent
    from flowengine._http import Transport, TransportConfig
    from flowengine._machine import Action, Guard
    from flowengine._records import Flow
    from flowengine._sandbox import Sandbox
    from flowengine._spec import FlowSpec
    from flowengine._store import Store

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("flowengine")
hookimpl = pluggy.HookimplMarker("flowengine")


@hookspec(firstresult=True)
def flowengine_store(url: str) -> Store | None:
    """Return a Store for ``url`` (``memory://``, ``sqlite:///path``, ...), or None if not yours."""


@hookspec(firstresult=True)
def flowengine_transport(config: TransportConfig) -> Transport | None:
    """Return the Transport that sends the engine's HTTP requests."""


@hookspec
def flowengine_guards() -> Mapping[str, Guard]:
    """Return guards by name, for specs to use in ``when:`` beyond the built-ins."""


@hookspec
def flowengine_actions() -> Mapping[str, Action]:
    """Return actions by name, for specs to use in ``do:`` beyond the built-ins."""


@hookspec
def flowengine_transition(flow: Flow, event: str, source: str, dest: str) -> None:
    """Observe a transition that was stored (audit, logs, metrics); ``flow`` is redacted."""


@hookspec
def flowengine_request(event: RequestEvent) -> None:
    """Observe one attempt at a provider request once it ended (tracing, metrics); no secret in it."""


@hookspec(firstresult=True)
def flowengine_refresh_queue(via: str) -> RefreshQueue | None:
    """Return the queue named ``via`` (``celery``) that hands refreshes to other workers, or None."""


@hookspec(firstresult=True)
def flowengine_present(flow: Flow, step: str, detail: Mapping[str, Any]) -> bool | None:
    """Show a step of a flow to the person (``authorize``, ``transition``, ``result``, ``error``).

    Return True when handled, None to let the next presenter try; the first
    non-None answer wins (so return None, not False, for steps you don't show).
    """


@hookspec
def flowengine_commands(cli: click.Group) -> None:
    """Add subcommands to the ``flowengine`` command line."""


@hookspec
def flowengine_spec_paths() -> list[Path]:
    """Return folders where named specs (``NAME.yaml``) are found by ``load_spec``."""


@hookspec(firstresult=True)
def flowengine_sandbox(spec: FlowSpec, url: str | None) -> Sandbox | None:
    """Return a local emulator of ``spec``'s provider, or one already running at ``url``."""
