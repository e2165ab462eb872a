"""The terminal frontend: ``flowengine login``.

While a command runs, a ``TerminalPresenter`` is registered with the plugin
manager: it prints each stored transition (``flowengine_transition``) and the
steps the command hands to ``flowengine_present``. It prints fingerprints,
never a token, code or secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import click
from flowengine import hookimpl, plugins
from flowengine.cli import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, spec_argument
from flowengine.engine import AsyncEngine
from flowengine.errors import FlowError, PluginError, SpecError
from flowengine.records import Flow
from flowengine.spec import FlowSpec

__all__ = ["TerminalPresenter", "flow_summary", "flowengine_commands", "login"]


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
        else {
            "code": flow.error.code,
            "message": flow.error.message,
            "description": flow.error.description,
        },
        "history": [
            {"at": h.at, "event": h.event, "source": h.source, "dest": h.dest, "error": h.error}
            for h in flow.history
        ],
    }


class TerminalPresenter:
    """Prints a flow's progress to the terminal (to stderr when ``quiet`` output is JSON)."""

    def __init__(self, *, err: bool = False) -> None:
        self.err = err

    def echo(self, text: str) -> None:
        """Print one line."""
        click.echo(text, err=self.err)

    @hookimpl
    def flowengine_transition(self, flow: Flow, event: str, source: str, dest: str) -> None:
        """Print ``source -> dest (event)`` as each transition is stored."""
        arrow = f"{source} -> {dest}" if source else f"-> {dest}"
        code = f"  [{flow.error.code}]" if flow.error and dest == flow.state and flow.error.code else ""
        self.echo(f"  {arrow:<28} ({event}){code}")

    @hookimpl
    def flowengine_present(self, flow: Flow, step: str, detail: Mapping[str, Any]) -> bool:
        """Show the authorization step and the result."""
        if step == "authorize":
            self.echo(f"Authorizing at {detail['where']} ({detail.get('how', 'waiting for you')})")
        elif step == "result":
            self.echo(_describe_result(flow))
        elif step == "error":
            self.echo(f"Error: {detail['error']}")
        else:
            return False
        return True


def _describe_result(flow: Flow) -> str:
    if flow.state == "exchanged" or flow.token_fingerprint:
        scope = flow.granted_scope or "unknown"
        lines = [f"Authorized as {flow.account}; token {flow.token_fingerprint}; scope {scope}."]
        if flow.missing_scopes:
            lines.append(f"Not granted: {' '.join(sorted(flow.missing_scopes))}.")
        return "\n".join(lines)
    if flow.error is None:
        return f"Flow ended in state {flow.state!r}."
    said = flow.error.description or flow.error.message
    return f"Flow {flow.state}: {flow.error.code}: {said}"


def _exit_code(engine: AsyncEngine, flow: Flow) -> int:
    if flow.token_fingerprint:
        return EXIT_OK
    if flow.error is not None and flow.error.code == "access_denied":
        return EXIT_DENIED
    return EXIT_FAILED if engine.is_final(flow) or flow.error else EXIT_OK


async def _login_sandbox(
    spec: FlowSpec, *, approve: bool, scope: str | None, store: str, as_json: bool
) -> int:
    sandbox = plugins.open_sandbox(spec, os.environ.get("FLOWENGINE_SANDBOX_URL") or None)
    pm = plugins.get_plugin_manager()
    presenter = TerminalPresenter(err=as_json)
    pm.register(presenter, name="flowengine-terminal")
    try:
        with sandbox:
            async with AsyncEngine(
                spec, client=sandbox.client, store=store, endpoints=sandbox.endpoints
            ) as engine:
                started = time.monotonic()
                flow = await engine.start(scope=scope)
                assert flow.authorization_url is not None
                where = flow.authorization_url.split("?", 1)[0]
                how = "the sandbox answers Grant" if approve else "the sandbox answers Deny"
                engine.present(flow, "authorize", where=where, how=how)
                callback_url = await sandbox.consent(flow.authorization_url, approve=approve)
                flow = await engine.callback(callback_url)
                if as_json:
                    click.echo(json.dumps(flow_summary(flow), indent=2))
                else:
                    engine.present(flow, "result")
                    click.echo(f"({time.monotonic() - started:.2f}s against the sandbox at {sandbox.url})")
                return _exit_code(engine, flow)
    finally:
        pm.unregister(presenter)


@click.command()
@click.argument("spec_ref", metavar="SPEC")
@click.option("--sandbox", is_flag=True, help="Run against the local emulator (started on a free port).")
@click.option(
    "--approve/--deny",
    default=True,
    show_default=True,
    help="With --sandbox: what the emulated person answers on the consent page.",
)
@click.option("--scope", help="Scopes to ask for, space-separated (Podio: 'user:read space:all').")
@click.option(
    "--store",
    envvar="FLOWENGINE_STORE",
    default="memory://",
    show_default=True,
    help="Where flows and tokens are kept (env FLOWENGINE_STORE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final flow as one JSON document.")
def login(spec_ref: str, sandbox: bool, approve: bool, scope: str | None, store: str, as_json: bool) -> None:
    """Run a spec's authorization flow and keep the token.

    With --sandbox, no credentials are needed: the local emulator plays the
    provider and the person. Set FLOWENGINE_SANDBOX_URL to use a sandbox that
    is already running (`flowengine sandbox serve`).

    \b
    Exit codes: 0 exchanged, 2 usage or invalid spec, 3 denied, 4 failed.
    \b
    Example:
      flowengine login podio --sandbox --approve
    """
    if not sandbox:
        click.echo(
            "login against the real provider (browser loopback or paste mode) is not available yet; "
            "use --sandbox",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    try:
        spec = spec_argument(spec_ref)
        code = asyncio.run(_login_sandbox(spec, approve=approve, scope=scope, store=store, as_json=as_json))
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_USAGE)
    except PluginError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except FlowError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(code)


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``flowengine login``."""
    cli.add_command(login)
