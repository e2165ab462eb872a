"""``flowengine web serve``: the web frontend under uvicorn, the sandbox optionally beside it.

Starlette and uvicorn are imported when the command runs, not when the
``flowengine`` command starts: they come with the ``web`` extra.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

import attrs
import click
from flowengine import AsyncEngine, Client, ConfigError, FlowError, FlowSpec, PluginError, open_sandbox
from flowengine.cli import (
    connection_option,
    fail,
    parse_connection,
    resolve_connection,
    sandbox_url,
    spec_argument,
    store_option,
    store_url,
)

from flowengine_web._connection import QueryConnection, check_pinned

__all__ = ["web"]

SECRET_ENV = "FLOWENGINE_WEB_SECRET"  # noqa: S105 - the variable's name, not a secret
OPERATOR_ENV = "FLOWENGINE_OPERATOR_SECRET"


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
@connection_option
@click.option(
    "--operator",
    is_flag=True,
    help=f"Serve the operator page at /operator, for whoever signs in with {OPERATOR_ENV} "
    "(read from the environment only, never from the command line).",
)
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
    connection: tuple[str, ...],
    operator: bool,
) -> None:
    """Serve the web frontend with uvicorn until Ctrl-C (no access log: URLs carry codes).

    Sessions are signed with FLOWENGINE_WEB_SECRET: give every worker the same
    one, and a store they share (redis://, postgresql://), so that a flow
    started on one worker can finish on another.

    A spec's connection variables come from --connection NAME=VALUE, else the
    start URL's query (/auth/zendesk?subdomain=acme), else (with --sandbox) the
    spec's examples. A query never changes a --connection value, nor names one
    that can choose any host (the oidc spec's issuer, gitlab's host): give those
    with --connection.

    --operator adds the operator page (/operator): the machine of each spec with
    live counts, failures over time and every token's health. Its sign-in takes
    the secret in FLOWENGINE_OPERATOR_SECRET (at least 16 characters).

    \b
    Example (open the printed URL and click "Try to authorize"):
      flowengine web serve --spec podio --store memory:// --port 8000 --sandbox
    """
    try:
        from flowengine_web._server import serve_forever
    except ImportError as exc:
        fail(
            PluginError(f"{exc.name or exc} is missing: pip install 'flowengine[web]'", code="extra_missing")
        )
    specs = _served_specs(spec_refs)
    operator_secret = _operator_secret() if operator else None
    _require_client(sandbox, client_id)
    secret_key = _secret_key()
    with contextlib.ExitStack() as stack:
        try:
            plan = _Plan(store_url(store), specs, sandbox, client_id)
            sock = _listen(stack, host, port)
            public = base_url or (f"http://127.0.0.1:{sock.getsockname()[1]}" if sandbox else None)
            engines = plan.engines(stack, registered_domain)
            given = parse_connection(connection)
            defaults = _connection_defaults(plan.specs, given, sandbox)
            pins = {s.name: {n: v for n, v in given.items() if n in s.connection} for s in plan.specs}
            app = _app(engines, secret_key, scope, public, (pins, defaults), operator_secret)
        except FlowError as exc:
            fail(exc)
        shown = (public or _url_of(sock)).rstrip("/")
        serve_forever(app, sock, lambda: _announce(shown, engines, plan, operator=operator))


def _served_specs(spec_refs: tuple[str, ...]) -> list[FlowSpec]:
    """The specs to serve: each must have an authorization flow (a grant-only one has none)."""
    try:
        specs = [spec_argument(ref) for ref in spec_refs]
    except FlowError as exc:
        fail(exc)
    for spec in specs:
        if spec.machine is None:
            fail(
                ConfigError(
                    f"spec {spec.name!r} is grant-only: it has no authorization flow to serve at "
                    f"/auth/{spec.name}. Run its grant with `flowengine batch grant {spec.name} FILE.csv`",
                    code="grant_only_spec",
                )
            )
    return specs


def _require_client(sandbox: bool, client_id: str | None) -> None:
    """Off the sandbox, a client id is needed (its secret comes from the environment)."""
    if not sandbox and not client_id:
        fail(
            ConfigError(
                "no client id: give --client-id or set FLOWENGINE_CLIENT_ID (the secret comes from "
                "FLOWENGINE_CLIENT_SECRET), or run against --sandbox",
                code="credentials_missing",
            )
        )


def _secret_key() -> str:
    """FLOWENGINE_WEB_SECRET, or a random key with a warning that it serves one process only."""
    secret_key = os.environ.get(SECRET_ENV)
    if secret_key:
        return secret_key
    click.echo(
        f"Warning: {SECRET_ENV} is not set: sessions are signed with a random key, end with this "
        "process and are not understood by other workers.",
        err=True,
    )
    return secrets.token_urlsafe(32)


def _operator_secret() -> str:
    """FLOWENGINE_OPERATOR_SECRET: the operator page is never served without one (or a host's hook)."""
    secret = os.environ.get(OPERATOR_ENV, "")
    if len(secret.encode()) < 16:
        fail(
            ConfigError(
                f"--operator needs {OPERATOR_ENV} set to a secret of at least 16 characters (make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                code="credentials_missing",
            )
        )
    return secret


def _listen(stack: contextlib.ExitStack, host: str, port: int) -> socket.socket:
    from flowengine_web._server import bind

    sock = bind(host, port)  # a port in use: port_in_use, the same words as `sandbox serve`
    stack.callback(sock.close)
    return sock


def _url_of(sock: socket.socket) -> str:
    from flowengine_web._server import url_of

    return url_of(sock)


def _connection_defaults(
    specs: list[FlowSpec], given: dict[str, str], sandbox: bool
) -> dict[str, dict[str, str]]:
    """Per spec, the connection values a start URL without them gets: --connection, else the examples.

    ``connection_pinned`` when a value that can choose any host has none (a query may not give it).
    """
    defaults: dict[str, dict[str, str]] = {}
    for spec in specs:
        mine = {name: value for name, value in given.items() if name in spec.connection}
        try:
            defaults[spec.name] = resolve_connection(spec, mine, sandbox=sandbox, prompt=False)
        except ConfigError:
            defaults[spec.name] = mine  # the start URL's query must name the rest
        check_pinned(spec, spec.name, defaults[spec.name])
    return defaults


def _app(
    engines: dict[str, AsyncEngine],
    secret_key: str,
    scope: str | None,
    public: str | None,
    connections: tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]],
    operator_secret: str | None = None,
) -> Any:
    from flowengine_web._app import create_app

    pins, defaults = connections
    queries = {
        name: QueryConnection(engine.spec, pinned=pins.get(name, {}), defaults=defaults.get(name, {}))
        for name, engine in engines.items()
    }

    def connection(request: Any, name: str) -> dict[str, str]:
        return queries[name](request.query_params)

    return create_app(
        engines,
        secret_key=secret_key,
        scopes=dict.fromkeys(engines, scope) if scope else None,
        base_url=public,
        close_engines=True,
        connection=connection,
        operator_secret=operator_secret,
    )


@attrs.define
class _Plan:
    """The specs to serve, with their store and client; the sandboxes beside them, once entered."""

    store: str
    specs: list[FlowSpec]
    sandbox: bool
    client_id: str | None
    emulators: dict[str, str] = attrs.field(factory=dict)

    def engines(self, stack: contextlib.ExitStack, registered_domain: str | None) -> dict[str, AsyncEngine]:
        """One engine per spec: on the sandbox (started, or the running one), or the real provider."""
        names = [spec.name for spec in self.specs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise click.UsageError(f"spec {twice[0]!r} is given twice")
        running = sandbox_url() if self.sandbox else None
        engines: dict[str, AsyncEngine] = {}
        for spec in self.specs:
            if self.sandbox:
                emulator = stack.enter_context(open_sandbox(spec, running))
                self.emulators[spec.name] = emulator.url
                client, endpoints = emulator.client, dict(emulator.endpoints)
            else:
                secret = os.environ.get("FLOWENGINE_CLIENT_SECRET")
                client = Client(self.client_id or "", secret, registered_domain=registered_domain)
                endpoints = {}
            engines[spec.name] = AsyncEngine(spec, client=client, store=self.store, endpoints=endpoints)
        return engines


def _announce(shown: str, engines: dict[str, AsyncEngine], plan: _Plan, *, operator: bool = False) -> None:
    click.echo(f"flowengine web on {shown}/ (Ctrl-C stops it)")
    for name in engines:
        click.echo(f"  {name}: {shown}/auth/{name}")
        if name in plan.emulators:
            click.echo(f"  {name} sandbox: {plan.emulators[name]}")
    if operator:
        click.echo(f"  operator page: {shown}/operator (sign in with {OPERATOR_ENV})")
    # A store URL may hold a password: name its scheme only.
    scheme = urlsplit(plan.store).scheme
    click.echo(f"  store: {scheme}" + (" (this process only)" if scheme == "memory" else ""))
    sys.stdout.flush()
