"""How ``flowengine login`` brings the person's answer back: the sandbox, loopback or paste.

- **the sandbox plays the person** (``--sandbox`` alone): the local emulator answers
  its own consent page;
- **loopback** (RFC 8252): listen on ``127.0.0.1``, open the browser and wait for
  the provider to send it back there;
- **paste**: print the authorization URL and read the address the browser ends on,
  copied by the person.

The device grant's mode is ``device.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from urllib.parse import urlsplit

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
    is_loopback,
    open_sandbox,
)
from flowengine.cli import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    format_duration,
    print_error,
    sandbox_url,
)

from .common import TerminalPresenter, printable
from .loopback import LoopbackListener, Reply
from .session import (
    CALLBACK_PATH,
    LoginOptions,
    LoginTimeout,
    NothingPasted,
    Pending,
    presenting,
    report,
)

__all__ = ["callback_problem", "login_emulated", "login_interactive"]


async def login_emulated(spec: FlowSpec, options: LoginOptions) -> int:
    sandbox = open_sandbox(spec, sandbox_url())
    with presenting(options.as_json) as presenter, sandbox:
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
            code = report(engine, flow, options, presenter)
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


async def login_interactive(spec: FlowSpec, options: LoginOptions, client: Client | None) -> int:
    sandbox = open_sandbox(spec, sandbox_url()) if client is None else None
    with presenting(options.as_json) as presenter:
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
                return report(engine, flow, options, presenter)
        finally:
            if sandbox is not None:
                sandbox.__exit__(None, None, None)
