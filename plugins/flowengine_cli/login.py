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

import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import attrs
import click
from flowengine import (
    AsyncEngine,
    CallbackError,
    Client,
    ConfigError,
    Flow,
    FlowError,
    FlowSpec,
    callback_state,
    digest,
    digests_equal,
    get_plugin_manager,
    is_loopback,
    open_sandbox,
)
from flowengine.cli import (
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    ClientSettings,
    Interrupted,
    complete_spec,
    connection_option,
    fail,
    format_duration,
    opened_store,
    parse_connection,
    parse_duration,
    print_error,
    resolve_client,
    resolve_connection,
    run_command,
    sandbox_url,
    spec_argument,
    store_option,
    store_url,
)

from .common import TerminalPresenter, display_store_url, flow_summary, printable
from .loopback import LoopbackListener, Reply

__all__ = ["callback_problem", "login"]

Mode = Literal["emulated", "loopback", "paste", "device"]

DEFAULT_TIMEOUT = "5m"
CALLBACK_PATH = "/callback"


class LoginTimeout(Exception):
    """The person did not come back in time (exit 5)."""


class NothingPasted(Exception):
    """Standard input ended before a callback URL was pasted (exit 4)."""


@attrs.define
class Pending:
    """The flow a login started, once it has: what an ended login reports on."""

    store: str
    flow: Flow | None = None

    def left_behind(self, stored: Flow | None) -> str:
        """What the store holds of this login, given the flow read back from it: said, never guessed."""
        if self.flow is None:
            return "nothing was stored"
        if urlsplit(self.store).scheme == "memory":
            return "nothing was kept (the store is memory://)"
        if stored is None:
            return f"the flow {self.flow.id} may be left in the store: `flowengine flows show {self.flow.id}`"
        if stored.token_key:
            return f"the flow {stored.id} had already finished: the token is stored as {stored.token_key}"
        expires = time.strftime("%H:%M:%S", time.localtime(stored.expires_at))
        return (
            f"no token was stored; the flow {stored.id} stays in the store in state {stored.state!r} "
            f"until it expires at {expires} (`flowengine flows purge` removes it then)"
        )

    def interrupted(self, stop: Interrupted) -> str:
        """The message for Ctrl-C or SIGTERM (``run_command``'s ``cancelled``): the store is read back."""
        stored = None
        if self.flow is not None and urlsplit(self.store).scheme != "memory":
            try:
                stored = asyncio.run(_read_flow(self.store, self.flow.id))
            except (FlowError, OSError):
                stored = None
        how = "Cancelled" if stop.signum == signal.SIGINT else "Terminated (SIGTERM)"
        return f"{how}; {self.left_behind(stored)}."


async def _read_flow(url: str, flow_id: str) -> Flow | None:
    async with opened_store(url, reading=True) as backend:
        return await backend.get(flow_id)


#: The exit status of each outcome (DESIGN.md: 0 granted, 3 denied, 4 failed, 5 timed out).
_EXIT_CODES = {"granted": EXIT_OK, "denied": EXIT_DENIED, "expired": EXIT_TIMEOUT, "failed": EXIT_FAILED}


def _exit_code(flow: Flow) -> int:
    """The exit status of a flow's outcome; a flow still pending is fine."""
    return EXIT_OK if flow.outcome is None else _EXIT_CODES[flow.outcome]


@attrs.frozen
class LoginOptions:
    """What the command line asked for, checked and with defaults applied."""

    mode: Mode
    scope: str | None
    store: str
    as_json: bool
    pending: Pending
    approve: bool = True
    timeout: float = 300.0
    open_browser: bool = True
    redirect_uri: str | None = None
    port: int | None = None
    #: The spec's connection values (``--connection``), checked by the engine at start.
    connection: dict[str, str] = attrs.field(factory=dict)


@contextmanager
def _presenting(as_json: bool) -> Iterator[TerminalPresenter]:
    pm = get_plugin_manager()
    presenter = TerminalPresenter(err=as_json)
    pm.register(presenter, name="flowengine-terminal")
    try:
        yield presenter
    finally:
        pm.unregister(presenter)


def _report(engine: AsyncEngine, flow: Flow, options: LoginOptions, presenter: TerminalPresenter) -> int:
    if options.as_json:
        click.echo(json.dumps(flow_summary(flow), indent=2))
    else:
        engine.present(flow, "result")
        if flow.token_key and options.mode != "emulated":
            presenter.echo(f"Token stored as {flow.token_key} in {display_store_url(options.store)}.")
    return _exit_code(flow)


async def _login_emulated(spec: FlowSpec, options: LoginOptions) -> int:
    sandbox = open_sandbox(spec, sandbox_url())
    with _presenting(options.as_json) as presenter, sandbox:
        async with AsyncEngine(
            spec, client=sandbox.client, store=options.store, endpoints=sandbox.endpoints
        ) as engine:
            started = time.monotonic()
            flow = options.pending.flow = await engine.start(
                scope=options.scope, connection=options.connection
            )
            assert flow.authorization_url is not None
            where = flow.authorization_url.split("?", 1)[0]
            how = "the sandbox answers Grant" if options.approve else "the sandbox answers Deny"
            engine.present(flow, "authorize", where=where, how=how)
            callback_url = await sandbox.consent(flow.authorization_url, approve=options.approve)
            flow = await engine.callback(callback_url)
            code = _report(engine, flow, options, presenter)
            if not options.as_json:
                click.echo(f"({time.monotonic() - started:.2f}s against the sandbox at {sandbox.url})")
            return code


def callback_problem(spec: FlowSpec, flow: Flow, redirect_uri: str, text: str) -> str | None:
    """Why ``text`` is not the callback of ``flow`` (or None when it is): for a person to read.

    ``text`` is what the browser's address bar showed: the redirect URI with the
    provider's answer in its query (or that query alone). The ``state`` it
    carries must be this flow's, so a stale tab or another login's URL is
    refused before anything reaches the engine, let alone the token endpoint.
    """
    if "://" in text:
        got, want = urlsplit(text), urlsplit(redirect_uri)
        try:
            same_place = (got.scheme, got.hostname, got.port, got.path) == (
                want.scheme,
                want.hostname,
                want.port,
                want.path,
            )
        except ValueError:
            same_place = False
        if not same_place:
            authorize = (flow.authorization_url or "").split("?", 1)[0]
            if authorize and text.startswith(authorize):
                return (
                    "that is the authorization URL itself: open it in a browser, approve, "
                    "then copy the address you land on"
                )
            return f"that address is not on the redirect URI {redirect_uri}"
    try:
        state = callback_state(text, spec)
    except CallbackError as exc:
        return exc.message
    if not state:
        return f"it carries no {spec.callback.state!r} parameter; copy the whole address"
    if not digests_equal(digest(state), flow.state_hash):
        return "it belongs to another login (its state is not this one's); use the URL printed above"
    return None


def _open_browser(url: str) -> bool:
    """Open ``url`` in a graphical browser; False where there is none (an SSH session)."""
    graphical = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")
    # Without a display, webbrowser falls back to console browsers (lynx, w3m) that
    # would take over this very terminal: print the URL instead.
    if sys.platform.startswith("linux") and not graphical:
        return False
    import webbrowser

    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def _listen_target(options: LoginOptions) -> tuple[str, int, str]:
    """Host, port and path of the loopback listener, from --redirect-uri and --port."""
    if options.redirect_uri is None:
        return "127.0.0.1", options.port or 0, CALLBACK_PATH
    parts = urlsplit(options.redirect_uri)
    host = parts.hostname or ""
    if parts.scheme != "http" or not is_loopback(host):
        raise ConfigError(
            f"loopback mode listens on 127.0.0.1, but the redirect URI is {options.redirect_uri}: "
            "use --paste for a redirect URI on another host"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"the redirect URI {options.redirect_uri} has an invalid port") from None
    if port is not None and options.port is not None and port != options.port:
        raise ConfigError(f"--port {options.port} differs from the redirect URI's port {port}")
    # RFC 8252 §7.3: a loopback redirect URI without a port takes the listener's port.
    listen_host = "127.0.0.1" if host == "localhost" else host
    return listen_host, port if port is not None else options.port or 0, parts.path or "/"


async def _wait_loopback(
    engine: AsyncEngine,
    spec: FlowSpec,
    options: LoginOptions,
    presenter: TerminalPresenter,
) -> Flow:
    host, port, path = _listen_target(options)
    outcome: list[Flow] = []
    flow_box: list[Flow] = []

    async def handle(url: str) -> Reply:
        if not flow_box:  # listening already, the flow not yet started: nothing can be for it
            return Reply(503, "Not ready", "This login has not started yet.")
        flow = flow_box[0]
        problem = callback_problem(spec, flow, listener.redirect_uri, url)
        if problem is not None:
            # A stale tab or a stray request: this login goes on waiting.
            return Reply(
                400, "Not this login", f"This is not the callback of the login waiting here: {problem}."
            )
        result = await engine.callback(url)  # an error ends the login: wait() raises it
        outcome.append(result)
        if result.outcome == "granted":
            return Reply(200, "Signed in", "You are signed in. You can close this tab.", finished=True)
        said = printable(result.error.description or result.error.message) if result.error else result.state
        return Reply(200, "Not signed in", f"The sign-in did not complete: {said}", finished=True)

    async with LoopbackListener(handle, host=host, port=port, path=path) as listener:
        redirect_uri = listener.redirect_uri
        if options.redirect_uri is not None:
            # Keep the spelling registered with the provider (localhost stays localhost);
            # a redirect URI without a port gets the listener's.
            given = urlsplit(options.redirect_uri)
            netloc = given.netloc if given.port is not None else f"{given.netloc}:{listener.port}"
            redirect_uri = given._replace(netloc=netloc).geturl()
        flow = options.pending.flow = await engine.start(
            scope=options.scope, redirect_uri=redirect_uri, connection=options.connection
        )
        flow_box.append(flow)
        assert flow.authorization_url is not None
        where = flow.authorization_url.split("?", 1)[0]
        opened = options.open_browser and _open_browser(flow.authorization_url)
        how = "your browser was opened" if opened else "open the URL below in a browser"
        engine.present(flow, "authorize", where=where, how=how)
        presenter.echo(f"  {flow.authorization_url}")
        waiting = (
            f"Waiting for the browser to come back to {redirect_uri} "
            f"(Ctrl-C cancels; gives up in {format_duration(options.timeout)})"
        )
        with presenter.status(waiting):
            try:
                async with asyncio.timeout(options.timeout):
                    await listener.wait()
            except TimeoutError:
                raise LoginTimeout from None
    return outcome[0]


async def _read_line(prompt: str, *, err: bool) -> str | None:
    """One line from stdin (None at end of input), read on a daemon thread so a timeout can end the wait."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not answer.done():
            answer.set_result(line)

    def read() -> None:
        loop.call_soon_threadsafe(deliver, sys.stdin.readline())

    click.echo(prompt, nl=False, err=err)
    threading.Thread(target=read, name="flowengine-paste", daemon=True).start()
    line = await answer
    return line if line else None


async def _wait_paste(
    engine: AsyncEngine,
    spec: FlowSpec,
    options: LoginOptions,
    presenter: TerminalPresenter,
    redirect_uri: str,
) -> Flow:
    flow = options.pending.flow = await engine.start(
        scope=options.scope, redirect_uri=redirect_uri, connection=options.connection
    )
    assert flow.authorization_url is not None
    where = flow.authorization_url.split("?", 1)[0]
    opened = options.open_browser and _open_browser(flow.authorization_url)
    engine.present(flow, "authorize", where=where, how="paste mode")
    say = presenter.echo
    say(
        ("1. Your browser was opened at this URL; if it did not, open it and approve:")
        if opened
        else "1. Open this URL in a browser and approve:"
    )
    say(f"  {flow.authorization_url}")
    say(f"2. The browser then goes to {redirect_uri}?… (that page may not load).")
    say("   Copy that whole address from the address bar and paste it here.")
    try:
        async with asyncio.timeout(options.timeout):
            while True:
                line = await _read_line("Callback URL: ", err=options.as_json)
                if line is None:
                    raise NothingPasted
                text = line.strip().strip("'\"<>").strip()
                if not text:
                    continue
                problem = callback_problem(spec, flow, redirect_uri, text)
                if problem is None:
                    break
                say(f"That is not the callback of this login: {problem}.")
    except TimeoutError:
        raise LoginTimeout from None
    return await engine.callback(text)


async def _stored(engine: AsyncEngine, pending: Pending) -> Flow | None:
    return None if pending.flow is None else await engine.get(pending.flow.id)


async def _login_interactive(spec: FlowSpec, options: LoginOptions, client: Client | None) -> int:
    sandbox = open_sandbox(spec, sandbox_url()) if client is None else None
    with _presenting(options.as_json) as presenter:
        if sandbox is not None:
            sandbox.__enter__()
        try:
            endpoints = dict(sandbox.endpoints) if sandbox is not None else {}
            the_client = sandbox.client if sandbox is not None else client
            assert the_client is not None
            async with AsyncEngine(
                spec, client=the_client, store=options.store, endpoints=endpoints
            ) as engine:
                try:
                    if options.mode == "loopback":
                        flow = await _wait_loopback(engine, spec, options, presenter)
                    else:
                        redirect_uri = options.redirect_uri or the_client.redirect_uri
                        if not redirect_uri:
                            raise ConfigError(
                                "paste mode needs the redirect URI registered with the provider: "
                                f"pass --redirect-uri or set redirect_uri in the [{spec.name}] config table"
                            )
                        flow = await _wait_paste(engine, spec, options, presenter, redirect_uri)
                except LoginTimeout:
                    left = options.pending.left_behind(await _stored(engine, options.pending))
                    said = (
                        f"timed out after {format_duration(options.timeout)} waiting for the person; "
                        f"{left}. Run the command again (--timeout sets the wait)"
                    )
                    print_error(FlowError(said, code="login_timeout"))
                    return EXIT_TIMEOUT
                except NothingPasted:
                    left = options.pending.left_behind(await _stored(engine, options.pending))
                    print_error(
                        FlowError(f"input ended before a callback URL was pasted; {left}", code="paste_ended")
                    )
                    return EXIT_FAILED
                return _report(engine, flow, options, presenter)
        finally:
            if sandbox is not None:
                sandbox.__exit__(None, None, None)


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
def login(
    ctx: click.Context,
    spec_ref: str,
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
) -> None:
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
        sys.exit(_run_device(flags, device, sandbox=sandbox, scope=scope, store=store, as_json=as_json))
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
    sys.exit(_run_login(flags, sandbox=sandbox, approve=approve, scope=scope, store=store, as_json=as_json))


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
        with _presenting(as_json) as presenter:
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
                report=lambda engine, flow: _report(engine, flow, options, presenter),
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
            return run_command(lambda: _login_emulated(spec, emulated), cancelled=pending.interrupted)
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
    return run_command(lambda: _login_interactive(spec, options, client), cancelled=pending.interrupted)


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
