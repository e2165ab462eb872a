"""``flowengine web serve``: the web frontend under uvicorn, the sandbox optionally beside it.

Starlette and uvicorn are imported when the command runs, not when the
``flowengine`` command starts: they come with the ``web`` extra.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from typing import NoReturn
from urllib.parse import urlsplit

import click
from flowengine import AsyncEngine, Client, FlowError, SpecError, open_sandbox
from flowengine.cli import EXIT_USAGE, spec_argument

from flowengine_cli.common import default_store_url, store_option

__all__ = ["web"]

SECRET_ENV = "FLOWENGINE_WEB_SECRET"  # noqa: S105 - the variable's name, not a secret


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@click.group()
def web() -> None:
    """Serve the web frontend: any spec behind two routes."""


@web.command("serve")
@click.option(
    "--spec",
    "spec_refs",
    multiple=True,
    required=True,
    metavar="SPEC",
    help="A spec name or file to serve at /auth/NAME (repeat for several).",
)
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0 picks a free one).",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Point the engines at the local emulator: started beside the app, or the one at "
    "FLOWENGINE_SANDBOX_URL.",
)
@click.option("--scope", help="Scopes every flow asks for, space-separated (Podio: 'user:read').")
@click.option(
    "--base-url",
    metavar="URL",
    help="Public origin the redirect URI is built on (default with --sandbox: http://127.0.0.1:PORT; "
    "otherwise the request's own URL).",
)
@click.option(
    "--client-id",
    envvar="FLOWENGINE_CLIENT_ID",
    help="Without --sandbox: the client id (env FLOWENGINE_CLIENT_ID). The secret is read from "
    "FLOWENGINE_CLIENT_SECRET only, never from the command line.",
)
@click.option("--registered-domain", help="Without --sandbox: refuse redirect URIs off this domain.")
def serve(
    spec_refs: tuple[str, ...],
    store: str | None,
    host: str,
    port: int,
    sandbox: bool,
    scope: str | None,
    base_url: str | None,
    client_id: str | None,
    registered_domain: str | None,
) -> None:
    """Serve the web frontend with uvicorn until Ctrl-C (no access log: URLs carry codes).

    Sessions are signed with FLOWENGINE_WEB_SECRET: give every worker the same
    one, and a store they share (redis://, postgresql://), so that a flow
    started on one worker can finish on another.

    \b
    Example (open the printed URL and click "Try to authorize"):
      flowengine web serve --spec podio --store memory:// --port 8000 --sandbox
    """
    try:
        from flowengine_web._app import create_app
        from flowengine_web._server import bind, serve_forever, url_of
    except ImportError as exc:
        _fail(f"{exc.name or exc} is missing: pip install 'flowengine[web]'")
    secret_key = os.environ.get(SECRET_ENV)
    if not secret_key:
        click.echo(
            f"Warning: {SECRET_ENV} is not set: sessions are signed with a random key, end with this "
            "process and are not understood by other workers.",
            err=True,
        )
        secret_key = secrets.token_urlsafe(32)
    if not sandbox and not client_id:
        _fail("give --client-id (and FLOWENGINE_CLIENT_SECRET), or run against --sandbox")
    store_url = store or default_store_url()
    with contextlib.ExitStack() as stack:
        try:
            specs = [spec_argument(ref) for ref in spec_refs]
            sock = bind(host, port)
            stack.callback(sock.close)
            url = url_of(sock)
            public = base_url or (f"http://127.0.0.1:{sock.getsockname()[1]}" if sandbox else None)
            engines: dict[str, AsyncEngine] = {}
            emulators: dict[str, str] = {}
            for spec in specs:
                if spec.name in engines:
                    _fail(f"spec {spec.name!r} is given twice")
                if sandbox:
                    emulator = open_sandbox(spec, os.environ.get("FLOWENGINE_SANDBOX_URL") or None)
                    stack.enter_context(emulator)
                    emulators[spec.name] = emulator.url
                    client, endpoints = emulator.client, dict(emulator.endpoints)
                else:
                    secret = os.environ.get("FLOWENGINE_CLIENT_SECRET")
                    client = Client(client_id or "", secret, registered_domain=registered_domain)
                    endpoints = {}
                engines[spec.name] = AsyncEngine(spec, client=client, store=store_url, endpoints=endpoints)
            app = create_app(
                engines,
                secret_key=secret_key,
                scopes=dict.fromkeys(engines, scope) if scope else None,
                base_url=public,
                close_engines=True,
            )
        except SpecError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            sys.exit(EXIT_USAGE)
        except (FlowError, OSError) as exc:
            _fail(str(exc))
        shown = (public or url).rstrip("/")
        # A store URL may hold a password: name its scheme only.
        scheme = urlsplit(store_url).scheme or store_url

        def announce() -> None:
            click.echo(f"flowengine web on {shown}/ (Ctrl-C stops it)")
            for name in engines:
                click.echo(f"  {name}: {shown}/auth/{name}")
                if name in emulators:
                    click.echo(f"  {name} sandbox: {emulators[name]}")
            click.echo(f"  store: {scheme}" + (" (this process only)" if scheme == "memory" else ""))
            sys.stdout.flush()

        serve_forever(app, sock, announce)
