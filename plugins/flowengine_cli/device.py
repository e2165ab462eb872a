"""``flowengine login SPEC --device``: the device authorization grant (RFC 8628) in a terminal.

For a machine without a browser (an SSH session, a container): the command asks the
provider for a user code, prints it with the verification URI (and, when the terminal
can show one, a QR code of ``verification_uri_complete``), then polls the token endpoint
at the provider's interval until the person approves on any other device, denies, or
the code expires. With ``--sandbox`` the sandbox plays the provider and the person
(``--approve``/``--deny``). The engine's clock does the waiting: a test hands the
command a ``FakeClock`` through click's context object (``obj={"clock": ...}``).
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Callable
from typing import Any

import click
from flowengine import AsyncEngine, Client, Flow, FlowError, FlowSpec, Sandbox, open_sandbox
from flowengine.cli import EXIT_TIMEOUT, format_duration, print_error, sandbox_url

from .common import TerminalPresenter, printable

__all__ = ["clock_of", "device_login", "needs_secret", "qr_code"]

#: Characters a compact terminal QR code is drawn with: a terminal that cannot print them shows none.
_BLOCKS = "█▀▄ "


def qr_code(text: str, stream: Any) -> str | None:
    """``text`` as a QR code in half-block characters, when ``stream`` is a terminal that can show it.

    None in a pipe, on ``TERM=dumb``, when the stream's encoding has no block characters,
    when the terminal is narrower than the code, or when segno is not installed.
    """
    import os

    if not stream.isatty() or os.environ.get("TERM") == "dumb":
        return None
    try:
        _BLOCKS.encode(stream.encoding or "ascii")
        import segno  # imported only here: a QR code is drawn for a device login on a terminal
    except (UnicodeEncodeError, LookupError, ImportError):
        return None
    code = segno.make(text, error="l")
    width, _height = code.symbol_size(border=2)
    if width > shutil.get_terminal_size((80, 24)).columns:
        return None
    out = io.StringIO()
    code.terminal(out=out, compact=True, border=2)
    return out.getvalue().rstrip("\n")


def _instructions(flow: Flow, presenter: TerminalPresenter, *, emulated: bool) -> None:
    device = flow.device
    assert device is not None
    say = presenter.echo
    say(f"To sign in, open {printable(device.verification_uri)} on any device and enter the code:")
    say("")
    say(f"    {printable(device.user_code)}")
    say("")
    complete = device.verification_uri_complete
    if complete:
        say(f"Or open {printable(complete)}")
        drawn = None if emulated else qr_code(complete, sys.stderr if presenter.err else sys.stdout)
        if drawn is not None:
            say("or scan it:")
            say(drawn)
    lifetime = format_duration(max(0.0, flow.expires_at - flow.created_at))
    say(f"The code expires in {lifetime}; this terminal polls every {device.interval}s.")


async def device_login(
    spec: FlowSpec,
    *,
    client: Client | None,
    store: str,
    scope: str | None,
    connection: dict[str, str],
    timeout: float | None,  # noqa: ASYNC109 - on the engine's clock, not the event loop's
    approve: bool,
    clock: Any,
    presenter: TerminalPresenter,
    pending: Any,
    report: Callable[[AsyncEngine, Flow], int],
) -> int:
    """Run a device login and ``report`` how it ended; its exit status (``client`` None: the sandbox)."""
    sandbox: Sandbox | None = open_sandbox(spec, sandbox_url()) if client is None else None
    if sandbox is not None:
        sandbox.__enter__()
    try:
        the_client = sandbox.client if sandbox is not None else client
        assert the_client is not None
        endpoints = dict(sandbox.endpoints) if sandbox is not None else {}
        options: dict[str, Any] = {"clock": clock} if clock is not None else {}
        async with AsyncEngine(
            spec, client=the_client, store=store, endpoints=endpoints, **options
        ) as engine:
            flow = pending.flow = await engine.start_device(scope=scope, connection=connection)
            _instructions(flow, presenter, emulated=sandbox is not None)
            if sandbox is not None:
                assert flow.device is not None
                assert flow.device.verification_uri_complete is not None
                how = "approves" if approve else "denies"
                presenter.echo(f"(the sandbox plays the person: it {how} at the verification page)")
                await sandbox.consent(flow.device.verification_uri_complete, approve=approve)
            with presenter.status("Waiting for the person to approve (Ctrl-C cancels)"):
                done = await engine.poll_device(flow, timeout=timeout)
            if done.outcome is None:
                waited = format_duration(timeout or 0)
                said = f"no decision within {waited}; the code is good until it expires (--timeout: the wait)"
                print_error(FlowError(said, code="login_timeout"))
                return EXIT_TIMEOUT
            return report(engine, done)
    finally:
        if sandbox is not None:
            sandbox.__exit__(None, None, None)


def needs_secret(spec: FlowSpec) -> bool:
    """True when the device flow's requests carry the client secret (HTTP Basic, the body, an HMAC)."""
    rules = [spec.device, spec.grants.get(spec.device.grant)] if spec.device is not None else []
    return any(
        rule.client_auth in ("basic", "client_secret_jwt")
        or any("{client_secret}" in template for template in rule.params.values())
        for rule in rules
        if rule is not None
    )


def clock_of(ctx: click.Context) -> Any:
    """The clock a caller handed the command (``CliRunner.invoke(..., obj={"clock": clock})``), or None."""
    obj = ctx.find_root().obj
    return obj.get("clock") if isinstance(obj, dict) else None
