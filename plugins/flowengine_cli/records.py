"""``flowengine flows …`` and ``flowengine tokens …``: what a store holds, for people and scripts.

Tables show fingerprints, never tokens; ``--json`` prints the same facts as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import click
from flowengine import (
    AsyncEngine,
    Client,
    ConfigError,
    Flow,
    FlowError,
    FlowSpec,
    FlowStateError,
    PluginError,
    Store,
    StoreError,
    Token,
    open_sandbox,
)
from flowengine.cli import (
    carried,
    opened_store,
    parse_duration,
    resolve_client,
    run_command,
    sandbox_url,
    settled_flow,
    spec_argument,
    spec_for_token,
    spec_names,
    store_option,
)

from .common import ago, flow_summary, no_match_hint, print_table, printable, token_summary

__all__ = ["flows", "refresh_client", "refreshing_engine", "spec_option", "tokens"]


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


async def _stored_token(backend: Store, key: str) -> Token:
    """The token under ``key``; ``token_unknown`` when there is none."""
    token = await backend.get_token(key) if carried(key) else None
    if token is None:
        raise FlowStateError(f"no token {key!r} in the store", code="token_unknown")
    return token


def _settled(found: list[Flow]) -> list[Flow]:
    """The flows with the outcome their machine gives them; one it disagrees with is left out (stderr)."""
    kept = []
    for flow in found:
        try:
            kept.append(settled_flow(flow))
        except StoreError as exc:
            click.echo(f"Warning: flow {flow.id} left out: {exc.code}", err=True)
    return kept


@click.group()
def flows() -> None:
    """List, show and purge stored flows."""


@flows.command("list")
@click.option("--spec", "spec_name", help="Only flows of this spec.")
@click.option("--state", help="Only flows in this state (redirected, exchanged, …).")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def flows_list(spec_name: str | None, state: str | None, store: str | None, as_json: bool) -> None:
    """List stored flows, oldest first.

    \b
    Example:
      flowengine flows list --state failed --json
    """

    async def work() -> None:
        async with opened_store(store, reading=True) as backend:
            unknown = not all(carried(text) for text in (spec_name, state) if text is not None)
            found = [] if unknown else _settled(await backend.list_flows(spec=spec_name, state=state))
            if not found and (spec_name or state) and not unknown:
                states = {f.state for f in await backend.list_flows(spec=spec_name)}
                filters = {
                    "--spec": (spec_name, spec_names()),
                    "--state": (state, _states(spec_name, states)),
                }
                no_match_hint("flows", filters)
        if as_json:
            _emit([flow_summary(f) for f in found])
            return
        now = time.time()
        rows = [
            [
                f.id,
                f.spec,
                f.state,
                ago(f.created_at, now),
                str(f.account or ""),
                f.error.code if f.error else "",
            ]
            for f in found
        ]
        print_table(["ID", "SPEC", "STATE", "CREATED", "ACCOUNT", "ERROR"], rows)

    run_command(work)


def _states(spec_name: str | None, seen: set[str]) -> list[str]:
    """The states a flow of ``spec_name`` (else of any named spec) can be in, and those ``seen`` stored."""
    states = set(seen)
    for name in [spec_name] if spec_name in spec_names() else spec_names():
        try:
            machine = spec_argument(name or "").machine
        except FlowError:
            continue  # an invalid spec names no states; `spec validate` says why
        states.update(machine.states if machine is not None else ())
    return sorted(states)


@flows.command("show")
@click.argument("flow_id")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def flows_show(flow_id: str, store: str | None, as_json: bool) -> None:
    """Show one flow and its history.

    \b
    Example:
      flowengine flows show 0a3f8c21d9e74b5fa16c3e8d2b7f9041
    """

    async def work() -> None:
        async with opened_store(store, reading=True) as backend:
            flow = await backend.get(flow_id) if carried(flow_id) else None
        if flow is None:
            raise FlowStateError(f"no flow {flow_id!r} in the store", code="flow_unknown")
        summary = flow_summary(settled_flow(flow))
        if as_json:
            _emit(summary)
            return
        for key in (
            "id",
            "spec",
            "state",
            "client_id",
            "redirect_uri",
            "scope",
            "granted_scope",
            "token_key",
        ):
            click.echo(printable(f"{key + ':':<16}{summary[key] if summary[key] is not None else '-'}"))
        for key in ("connection", "kept"):
            if summary[key]:
                values = ", ".join(f"{name}={printable(value)}" for name, value in summary[key].items())
                click.echo(f"{key + ':':<16}{values}")
        if flow.error:
            said = printable(flow.error.description or flow.error.message)
            click.echo(f"{'error:':<16}{flow.error.code}: {said}")
        click.echo("history:")
        for entry in flow.history:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
            error = f"  [{entry.error}]" if entry.error else ""
            click.echo(printable(f"  {when}  {entry.event:<9} {entry.source or '-'} -> {entry.dest}{error}"))

    run_command(work)


@flows.command("purge")
@store_option
def flows_purge(store: str | None) -> None:
    """Remove flows whose time has passed (pending flows expire after the spec's ttl).

    \b
    Example:
      flowengine flows purge --store sqlite:///var/lib/app/flowengine.db
    """

    async def work() -> None:
        async with opened_store(store, reading=True) as backend:
            click.echo(f"purged {await backend.purge(time.time())} flow(s)")

    run_command(work)


@click.group()
def tokens() -> None:
    """List, show, refresh, revoke and delete stored tokens (shown by fingerprint only)."""


def _grant_state(token: Token) -> str:
    """``dead`` for a lost grant, else ``ok``."""
    return "dead" if token.dead else "ok"


@tokens.command("list")
@click.option("--provider", help="Only this provider's tokens (a spec name).")
@click.option("--expiring-within", metavar="DURATION", help="Only tokens expiring within, e.g. 1h.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def tokens_list(provider: str | None, expiring_within: str | None, store: str | None, as_json: bool) -> None:
    """List stored tokens.

    \b
    Example:
      flowengine tokens list --expiring-within 1h
    """
    before = time.time() + parse_duration(expiring_within) if expiring_within else None

    async def work() -> None:
        async with opened_store(store, reading=True) as backend:
            found = []
            if provider is None or carried(provider):
                found = await backend.list_tokens(provider=provider, expiring_before=before)
        if not found and provider:
            no_match_hint("tokens", {"--provider": (provider, spec_names())})
        if as_json:
            _emit([token_summary(t) for t in found])
            return
        now = time.time()
        rows = [
            [t.key, str(t.account), t.fingerprint, ago(t.expires_at, now), t.scope or "", _grant_state(t)]
            for t in sorted(found, key=lambda t: t.key)
        ]
        print_table(["KEY", "WHOSE", "FINGERPRINT", "EXPIRES", "SCOPE", "STATUS"], rows)

    run_command(work)


@tokens.command("show")
@click.argument("key")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def tokens_show(key: str, store: str | None, as_json: bool) -> None:
    """Show one token's facts (never the token itself).

    \b
    Example:
      flowengine tokens show podio:user:1001
    """

    async def work() -> None:
        async with opened_store(store, reading=True) as backend:
            token = await _stored_token(backend, key)
        summary = token_summary(token)
        if as_json:
            _emit(summary)
            return
        now = time.time()
        summary["expires_at"] = ago(token.expires_at, now)
        summary["obtained_at"] = ago(token.obtained_at, now)
        summary["dead_at"] = "" if token.dead_at is None else ago(token.dead_at, now)
        summary["account"] = str(token.account)
        for name, value in summary.items():
            click.echo(printable(f"{name + ':':<14}{value}"))

    run_command(work)


def _issued_by_sandbox(token: Token, spec: FlowSpec) -> bool:
    """True when ``token`` went to the client of the sandbox that emulates ``spec``'s provider."""
    try:
        return open_sandbox(spec).client.client_id == token.client_id
    except (PluginError, ImportError):  # no sandbox emulates this provider, or it is not installed
        return False


def refresh_client(token: Token, spec: FlowSpec, client_id: str | None = None) -> Client:
    """The client to refresh ``token`` with: --client-id, FLOWENGINE_<SPEC>_…, config, or a prompt.

    The id defaults to the one the token was issued to: a refresh by another
    client would be refused anyway. A token the sandbox issued, refreshed
    without ``--sandbox``, gets a hint saying so rather than only a request for
    credentials nobody has.
    """
    hint = ""
    if client_id is None and _issued_by_sandbox(token, spec):
        issuer = urlsplit(token.token_endpoint or "")
        where = (
            f"={issuer.scheme}://{issuer.netloc}"
            if issuer.netloc
            else " pointing at the sandbox that issued it"
        )
        hint = (
            f"{token.key} was issued by the sandbox (client {token.client_id!r}): add --sandbox, with "
            f"FLOWENGINE_SANDBOX_URL{where}"
        )
        if sys.stdin.isatty():
            click.echo(f"Hint: {hint}.", err=True)
    try:
        return resolve_client(spec.name, client_id=client_id, default_client_id=token.client_id).client
    except ConfigError as exc:
        if hint and exc.code == "credentials_missing":
            raise ConfigError(f"{exc.message}; {hint}", code=exc.code) from None
        raise


def _check_issuing_sandbox(token: Token, spec: FlowSpec, sandbox: str | None) -> None:
    """A token a sandbox issued is refreshed only by that sandbox: say where it is, or that it is gone.

    Sandbox tokens live as long as the sandbox that issued them (the README's
    ``login --sandbox`` starts one for that command only), so a guess about flags
    would send the person round in circles.
    """
    issuer = urlsplit(token.token_endpoint or "")
    origin = f"{issuer.scheme}://{issuer.netloc}"
    if not issuer.netloc or origin == sandbox or not _issued_by_sandbox(token, spec):
        return
    try:
        with open_sandbox(spec, origin) as box:  # entering checks that a sandbox still answers there
            answers = box.url == origin
    except PluginError:
        answers = False
    if answers and sandbox is None:
        return  # the client's credentials are asked for, with a hint naming this sandbox (refresh_client)
    if answers:
        todo = f": refresh it with FLOWENGINE_SANDBOX_URL={origin}"
    else:
        todo = (
            ", which no longer answers; a sandbox's tokens live only as long as that sandbox, so this one "
            f"cannot be refreshed: log in again (`flowengine login {spec.name} --sandbox`, whose token "
            f"replaces it) or delete it (`flowengine tokens delete {token.key}`)"
        )
    raise ConfigError(f"{token.key} came from the sandbox at {origin}{todo}", code="token_endpoint_mismatch")


async def refreshing_engine(
    token: Token,
    backend: Store,
    *,
    sandbox: str | None,
    client_id: str | None = None,
    spec_ref: str | None = None,
) -> AsyncEngine:
    """An engine on ``backend`` that can refresh ``token``: the sandbox's at ``sandbox``, or the provider's.

    The spec is ``--spec`` when given, else the file the token's spec came from, else
    the spec named by the token's provider (``spec_for_token``). The sandbox is
    checked first (``sandbox_unreachable`` at once, with a hint, rather than a
    connection error from deep in the refresh).
    """
    spec = spec_for_token(token, spec_ref)
    if sandbox is not None:
        with open_sandbox(spec, sandbox) as box:  # entering a sandbox at a URL checks that it answers
            client, endpoints = box.client, dict(box.endpoints)
        _check_issuing_sandbox(token, spec, sandbox)
    else:
        _check_issuing_sandbox(token, spec, None)
        client, endpoints = refresh_client(token, spec, client_id), {}
    return AsyncEngine(spec, client=client, store=backend, endpoints=endpoints)


def running_sandbox(sandbox: bool, command: str) -> str | None:
    """The running sandbox's URL when ``--sandbox`` is given (checked, or ``sandbox_unreachable``)."""
    return sandbox_url(needed_for=f"{command} --sandbox") if sandbox else None


sandbox_option = click.option(
    "--sandbox",
    is_flag=True,
    help="Use the sandbox at FLOWENGINE_SANDBOX_URL (the one that issued the token) and its client.",
)
client_id_option = click.option(
    "--client-id", help="The client id (default: the token's; secret from env, config or a prompt)."
)
spec_option = click.option(
    "--spec",
    "spec_ref",
    metavar="SPEC",
    help="The spec (name or file) to use (default: the file the token's spec came from, else its name).",
)


@tokens.command("refresh")
@click.argument("key")
@sandbox_option
@client_id_option
@spec_option
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def tokens_refresh(
    key: str, sandbox: bool, client_id: str | None, spec_ref: str | None, store: str | None, as_json: bool
) -> None:
    """Refresh a stored token now and store the new one.

    Credentials come from FLOWENGINE_<SPEC>_CLIENT_ID and _CLIENT_SECRET, the
    config file ($XDG_CONFIG_HOME/flowengine/config.toml) or a prompt; with
    --sandbox, from the running sandbox at FLOWENGINE_SANDBOX_URL.

    \b
    Example:
      FLOWENGINE_SANDBOX_URL=http://127.0.0.1:8790 flowengine tokens refresh podio:user:1001 --sandbox
    """

    async def work() -> None:
        where = running_sandbox(sandbox, "tokens refresh")
        async with opened_store(store, reading=True) as backend:
            token = await _stored_token(backend, key)
            async with await refreshing_engine(
                token, backend, sandbox=where, client_id=client_id, spec_ref=spec_ref
            ) as engine:
                fresh = await engine.refresh(token)
        if as_json:
            _emit(token_summary(fresh))
        else:
            click.echo(f"refreshed {fresh.key}: {token.fingerprint} -> {fresh.fingerprint}")

    run_command(work)


@tokens.command("revoke")
@click.argument("key")
@click.option(
    "--hint",
    type=click.Choice(["refresh_token", "access_token"]),
    help="Which token to send (default: the refresh token when there is one: it ends the grant).",
)
@sandbox_option
@client_id_option
@spec_option
@store_option
def tokens_revoke(
    key: str, hint: str | None, sandbox: bool, client_id: str | None, spec_ref: str | None, store: str | None
) -> None:
    """Revoke a token at the provider (RFC 7009), then delete it here.

    Only for providers whose spec has a `revocation` section. Podio documents
    no revocation endpoint: there, `tokens delete` forgets the token here, and
    the person removes the app's access in their Podio account settings.
    Credentials as for `tokens refresh`.

    \b
    Example:
      flowengine tokens revoke example:user:alice
    """

    async def work() -> None:
        where = running_sandbox(sandbox, "tokens revoke")
        async with opened_store(store, reading=True) as backend:
            token = await _stored_token(backend, key)
            if spec_for_token(token, spec_ref).revocation is None:
                raise ConfigError(
                    f"spec {token.provider!r} names no revocation endpoint, so the token cannot be revoked "
                    f"at the provider from here; `flowengine tokens delete {key}` forgets it in this store",
                    code="revocation_unsupported",
                )
            async with await refreshing_engine(
                token, backend, sandbox=where, client_id=client_id, spec_ref=spec_ref
            ) as engine:
                await engine.revoke(token, hint=hint)
        click.echo(f"revoked {key} at the provider and deleted it here")

    run_command(work)


@tokens.command("delete")
@click.argument("key")
@store_option
def tokens_delete(key: str, store: str | None) -> None:
    """Delete a stored token (the provider still considers it valid until it expires).

    \b
    Example:
      flowengine tokens delete podio:user:1001
    """

    async def work() -> None:
        async with opened_store(store, reading=True) as backend:
            if not carried(key) or not await backend.delete_token(key):
                raise FlowStateError(f"no token {key!r} in the store", code="token_unknown")
        click.echo(f"deleted {key}")

    run_command(work)
