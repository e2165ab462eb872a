"""``flowengine login``: run a spec's authorization flow from the terminal.

Four ways to bring the person's answer back:

- **loopback** (RFC 8252): listen on ``127.0.0.1``, use
  ``http://127.0.0.1:PORT/callback`` as the redirect URI, open the browser and
  wait for the provider to send it back there;
- **paste**, for providers like Podio whose redirect URI must be on a domain
  registered with the API key: print the authorization URL and read the
  address the browser ends on, copied by the person;
- **the sandbox plays the person** (``--sandbox`` alone): the local emulator
  answers its own consent page, for demos and tests without a browser;
- **device** (``--device``, RFC 8628; ``device.py``): print a user code and where to
  enter it, and poll until the person approves on another device.

Whatever the mode, the token goes to the store and only its fingerprint is shown.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import click
from flowengine import (
    ConfigError,
    FlowError,
    FlowSpec,
    is_loopback,
)
from flowengine.cli import (
    EXIT_INTERRUPTED,
    ClientSettings,
    complete_spec,
    connection_option,
    fail,
    parse_connection,
    parse_duration,
    resolve_client,
    resolve_connection,
    run_command,
    sandbox_url,
    spec_argument,
    store_option,
    store_url,
)

from .modes import login_emulated, login_interactive
from .session import DEFAULT_TIMEOUT, LoginOptions, Mode, Pending, presenting, report

__all__ = ["login"]


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@click.command()
@click.argument("spec_ref", metavar="SPEC", shell_complete=complete_spec)
@click.option(
    "--loopback",
    "mode",
    flag_value="loopback",
    help="Receive the callback on http://127.0.0.1:PORT/callback (the default without --sandbox).",
)
@click.option(
    "--paste",
    "mode",
    flag_value="paste",
    help="Print the URL, then read the address the browser ends on (for redirect URIs off this machine).",
)
@click.option(
    "--device",
    "mode",
    flag_value="device",
    help="The device grant (RFC 8628): print a code to enter on another device, and poll; no browser here.",
)
@click.option(
    "--private-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The client's private key (PEM or JWK file), for a spec whose requests use private_key_jwt.",
)
@click.option(
    "--redirect-uri",
    metavar="URL",
    help="The redirect URI registered with the provider (config: redirect_uri); off loopback: --paste.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Loopback mode: the port to listen on (default: a free one).",
)
@click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="DURATION",
    help="How long to wait for the person (90s, 5m, 1h); exit 5 when it runs out "
    "(--device: until the code expires).",
)
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@click.option(
    "--client-id", help="The client (API key) id. Else FLOWENGINE_<SPEC>_CLIENT_ID, config, prompt."
)
@click.option(
    "--client-secret",
    help="The client secret (visible to other local users in `ps`: prefer "
    "FLOWENGINE_<SPEC>_CLIENT_SECRET, the config file or the prompt).",
)
@click.option("--sandbox", is_flag=True, help="Run against the local emulator (started on a free port).")
@click.option(
    "--approve/--deny",
    default=True,
    show_default=True,
    help="With --sandbox alone: what the emulated person answers on the consent page.",
)
@click.option("--scope", help="Scopes to ask for, space-separated (Podio: 'user:read space:all').")
@connection_option
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the final flow as one JSON document.")
@click.pass_context
def login(ctx: click.Context, /, spec_ref: str, **given: Any) -> None:
    """Run a spec's authorization flow and keep the token in the store.

    Loopback mode (the default) listens on 127.0.0.1, opens the browser and
    waits for the provider to come back. Paste mode (--paste, or a
    --redirect-uri off this machine) prints the URL and reads the address the
    browser ends on. Credentials: --client-id, FLOWENGINE_<SPEC>_CLIENT_ID /
    _CLIENT_SECRET, $XDG_CONFIG_HOME/flowengine/config.toml, or a prompt.

    With --sandbox alone the local emulator plays the provider and the person;
    with --sandbox --loopback or --paste it plays only the provider, and you
    (or a test) answer its consent page. FLOWENGINE_SANDBOX_URL selects a
    sandbox that is already running (`flowengine sandbox serve`).

    A spec with connection variables (a tenant's subdomain) takes them as
    --connection NAME=VALUE, else asks on a terminal; the sandbox uses the
    spec's examples for those not given.

    With --device (the device grant, RFC 8628) nothing listens and no browser opens
    here: the command prints a user code and where to enter it (a QR code of the
    link on a terminal that can show one), then polls at the provider's interval
    until the person approves on any device; with --sandbox the sandbox approves
    (or --deny denies).

    \b
    Exit codes: 0 exchanged or granted, 2 usage or invalid spec, 3 denied, 4 failed,
    5 timed out waiting for the person (--device: the code expired),
    130 cancelled with Ctrl-C, 143 with SIGTERM.
    \b
    Examples:
      flowengine login podio --sandbox --approve
      flowengine login github --client-id Iv1.0123
      flowengine login zendesk --connection subdomain=acme --client-id my-app
      flowengine login podio --paste --redirect-uri https://example.com/flowengine/callback
      flowengine login google --device --client-id 1234.apps.googleusercontent.com
    """
    sys.exit(_dispatch(ctx, spec_ref, **given))


def _dispatch(
    ctx: click.Context,
    spec_ref: str,
    *,
    mode: str | None,
    private_key: Path | None,
    redirect_uri: str | None,
    port: int | None,
    timeout: str,
    no_browser: bool,
    client_id: str | None,
    client_secret: str | None,
    sandbox: bool,
    approve: bool,
    scope: str | None,
    connection: tuple[str, ...],
    store: str | None,
    as_json: bool,
) -> int:
    """Check the flags, then run the login the mode asks for; its exit status."""
    wait = parse_duration(timeout)
    if wait <= 0:
        raise click.BadParameter("must be more than 0 seconds", param_hint="--timeout")
    _check_flags(ctx, sandbox=sandbox, mode=mode, has_client=bool(client_id or client_secret or private_key))
    if mode == "device":
        from .device import clock_of

        device = _DeviceFlags(wait if _given(ctx, "timeout") else None, approve, private_key, clock_of(ctx))
        flags = _Flags(
            spec_ref, mode, None, None, wait, True, client_id, client_secret, parse_connection(connection)
        )
        return _run_device(flags, device, sandbox=sandbox, scope=scope, store=store, as_json=as_json)
    flags = _Flags(
        spec_ref,
        mode,
        redirect_uri,
        port,
        wait,
        no_browser,
        client_id,
        client_secret,
        parse_connection(connection),
        private_key,
    )
    return _run_login(flags, sandbox=sandbox, approve=approve, scope=scope, store=store, as_json=as_json)


@attrs.frozen
class _DeviceFlags:
    """What ``--device`` adds: the wait (None: until the code expires), the sandbox's answer, a key."""

    timeout: float | None
    approve: bool
    private_key: Path | None
    clock: object = None


def _run_device(
    flags: _Flags, device: _DeviceFlags, *, sandbox: bool, scope: str | None, store: str | None, as_json: bool
) -> int:
    """Load the spec and the client, then run a device login; its exit status."""
    from .device import device_login, needs_secret

    try:
        spec = spec_argument(flags.spec_ref)
        pending = Pending(store_url(store))
        if sandbox:
            sandbox_url()
        connection = resolve_connection(spec, flags.connection, sandbox=sandbox)
        client = None
        if not sandbox:
            settings = resolve_client(
                spec.name,
                client_id=flags.client_id,
                client_secret=flags.client_secret,
                scope=scope,
                require_secret=needs_secret(spec),
            )
            client = attrs.evolve(settings.client, private_key=device.private_key)
            scope = settings.scope
    except FlowError as exc:
        fail(exc)
    except KeyboardInterrupt:
        click.echo("\nCancelled; nothing was stored.", err=True)
        return EXIT_INTERRUPTED
    options = LoginOptions("device", scope, pending.store, as_json, pending, approve=device.approve)

    async def run() -> int:
        with presenting(as_json) as presenter:
            return await device_login(
                spec,
                client=client,
                store=pending.store,
                scope=scope,
                connection=connection,
                timeout=device.timeout,
                approve=device.approve,
                clock=device.clock,
                presenter=presenter,
                pending=pending,
                report=lambda engine, flow: report(engine, flow, options, presenter),
            )

    return run_command(run, cancelled=pending.interrupted)


@attrs.frozen
class _Flags:
    """What the command line said about the spec, the mode and the client."""

    spec_ref: str
    mode: str | None
    redirect_uri: str | None
    port: int | None
    wait: float
    no_browser: bool
    client_id: str | None
    client_secret: str | None
    connection: dict[str, str] = attrs.field(factory=dict)
    private_key: Path | None = None


def _run_login(
    flags: _Flags, *, sandbox: bool, approve: bool, scope: str | None, store: str | None, as_json: bool
) -> int:
    """Load the spec and the client (a prompt may ask), then run the login; its exit status."""
    try:
        spec = spec_argument(flags.spec_ref)
        if spec.machine is None:
            raise _grant_only(spec, sandbox)
        pending = Pending(store_url(store))
        if sandbox:
            sandbox_url()  # a malformed FLOWENGINE_SANDBOX_URL is said before anything starts
        connection = resolve_connection(spec, flags.connection, sandbox=sandbox)
        if sandbox and flags.mode is None:
            emulated = LoginOptions(
                "emulated", scope, pending.store, as_json, pending, approve=approve, connection=connection
            )
            return run_command(lambda: login_emulated(spec, emulated), cancelled=pending.interrupted)
        settings = (
            None
            if sandbox
            else _client_settings(spec, flags.client_id, flags.client_secret, flags.redirect_uri, scope)
        )
        if settings is not None and flags.private_key is not None:
            settings = attrs.evolve(
                settings, client=attrs.evolve(settings.client, private_key=flags.private_key)
            )
    except FlowError as exc:
        fail(exc)
    except KeyboardInterrupt:  # Ctrl-C at a credentials prompt: nothing has started
        click.echo("\nCancelled; nothing was stored.", err=True)
        return EXIT_INTERRUPTED
    redirect = settings.redirect_uri if settings else flags.redirect_uri
    chosen: Mode = "paste" if flags.mode == "paste" else "loopback"
    if flags.mode is None and redirect and not is_loopback(urlsplit(redirect).hostname):
        chosen = "paste"
    options = LoginOptions(
        chosen,
        settings.scope if settings else scope,
        pending.store,
        as_json,
        pending,
        timeout=flags.wait,
        open_browser=not flags.no_browser,
        redirect_uri=redirect,
        port=flags.port,
        connection=connection,
    )
    client = settings.client if settings else None
    return run_command(lambda: login_interactive(spec, options, client), cancelled=pending.interrupted)


def _check_flags(ctx: click.Context, *, sandbox: bool, mode: str | None, has_client: bool) -> None:
    """Refuse options that do not go together, before anything starts (click's usage errors)."""
    if mode == "device":
        for name in ("redirect_uri", "port"):
            if _given(ctx, name):
                raise click.UsageError(
                    f"--{name.replace('_', '-')} has no use with --device: nothing listens"
                )
        if _given(ctx, "approve") and not sandbox:
            raise click.UsageError(
                "--approve/--deny apply only with --sandbox (the sandbox plays the person)"
            )
        if sandbox and has_client:
            raise click.UsageError(
                "--sandbox uses the sandbox's own client: leave out --client-id/--client-secret"
            )
        return
    if _given(ctx, "private_key") and sandbox:
        raise click.UsageError("--sandbox uses the sandbox's own client: leave out --private-key")
    if sandbox and mode is None:
        for name in ("redirect_uri", "port", "timeout", "no_browser", "client_id", "client_secret"):
            if _given(ctx, name):
                raise click.UsageError(
                    f"--{name.replace('_', '-')} applies when a person answers: add --loopback or --paste"
                )
    elif _given(ctx, "approve"):
        raise click.UsageError("--approve/--deny apply only to --sandbox without --loopback or --paste")
    if sandbox and has_client:
        raise click.UsageError(
            "--sandbox uses the sandbox's own client: leave out --client-id/--client-secret"
        )


def _grant_only(spec: FlowSpec, sandbox: bool) -> ConfigError:
    """A grant-only spec has no flow to log in through: say which command runs its grant."""
    columns = ",".join(spec.inputs) or "its inputs"
    return ConfigError(
        f"spec {spec.name!r} is grant-only: there is no authorization flow to log in through. "
        f"Run its grant with `flowengine batch grant {spec.name} FILE.csv{' --sandbox' if sandbox else ''}` "
        f"(a CSV file with the header {columns} and one row per grant)",
        code="grant_only_spec",
    )


def _client_settings(
    spec: FlowSpec,
    client_id: str | None,
    client_secret: str | None,
    redirect_uri: str | None,
    scope: str | None,
) -> ClientSettings:
    """The client from flags, environment, config or a prompt; missing credentials suggest --sandbox."""
    try:
        return resolve_client(
            spec.name,
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            scope=scope,
        )
    except ConfigError as exc:
        if exc.code != "credentials_missing":
            raise
        hint = "; to try flowengine without credentials, add --sandbox"
        raise ConfigError(exc.message + hint, code=exc.code) from None
