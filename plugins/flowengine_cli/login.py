"""``flowengine login``: run a spec's authorization flow from the terminal."""

from __future__ import annotations

import json
import os
import sys
import time

import click
from flowengine import plugins
from flowengine.cli import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, spec_argument
from flowengine.engine import AsyncEngine
from flowengine.records import Flow
from flowengine.spec import FlowSpec

from .common import TerminalPresenter, default_store_url, flow_summary, run_command, store_option

__all__ = ["login"]


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
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the final flow as one JSON document.")
def login(
    spec_ref: str, sandbox: bool, approve: bool, scope: str | None, store: str | None, as_json: bool
) -> None:
    """Run a spec's authorization flow and keep the token in the store.

    With --sandbox, no credentials are needed: the local emulator plays the
    provider and the person. Set FLOWENGINE_SANDBOX_URL to use a sandbox that
    is already running (`flowengine sandbox serve`), so that a later command
    (`flowengine tokens refresh`) can refresh the token it gave.

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
    code = run_command(
        lambda: _login_sandbox(
            spec_argument(spec_ref),
            approve=approve,
            scope=scope,
            store=store or default_store_url(),
            as_json=as_json,
        )
    )
    sys.exit(code)
