"""``flowengine flows …`` and ``flowengine tokens …``: what a store holds, for people and scripts.

Tables show fingerprints, never tokens; ``--json`` prints the same facts as JSON.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import click
from flowengine import plugins
from flowengine.cli import EXIT_FAILED, EXIT_USAGE, spec_argument
from flowengine.client import Client
from flowengine.engine import AsyncEngine
from flowengine.errors import ConfigError, FlowStateError
from flowengine.records import Token
from flowengine.store import Store

from .common import default_store_url, flow_summary, run_command, store_option, token_summary

__all__ = ["flows", "parse_duration", "tokens"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``1h``, ``2d`` (or a bare number of seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 30m, 1h or 2d")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "never"
    delta = when - now
    span = abs(delta)
    text = (
        f"{span / 86400:.1f}d" if span >= 86400 else f"{span / 3600:.1f}h" if span >= 3600 else f"{span:.0f}s"
    )
    return f"in {text}" if delta >= 0 else f"{text} ago"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


async def _with_store(url: str | None) -> Store:
    return plugins.open_store(url or default_store_url())


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
        backend = await _with_store(store)
        try:
            found = await backend.list_flows(spec=spec_name, state=state)
        finally:
            await backend.aclose()
        if as_json:
            _emit([flow_summary(f) for f in found])
            return
        now = time.time()
        rows = [
            [
                f.id,
                f.spec,
                f.state,
                _ago(f.created_at, now),
                str(f.account or ""),
                f.error.code if f.error else "",
            ]
            for f in found
        ]
        _table(["ID", "SPEC", "STATE", "CREATED", "ACCOUNT", "ERROR"], rows)

    run_command(work)


@flows.command("show")
@click.argument("flow_id")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def flows_show(flow_id: str, store: str | None, as_json: bool) -> None:
    """Show one flow and its history.

    \b
    Example:
      flowengine flows show 0aQ3hY2x9cXv1tL5rQZ8Ww
    """

    async def work() -> None:
        backend = await _with_store(store)
        try:
            flow = await backend.get(flow_id)
        finally:
            await backend.aclose()
        if flow is None:
            raise FlowStateError(f"no flow {flow_id!r} in the store", code="flow_unknown")
        summary = flow_summary(flow)
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
            click.echo(f"{key + ':':<16}{summary[key] if summary[key] is not None else '-'}")
        if flow.error:
            click.echo(f"{'error:':<16}{flow.error.code}: {flow.error.description or flow.error.message}")
        click.echo("history:")
        for entry in flow.history:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
            error = f"  [{entry.error}]" if entry.error else ""
            click.echo(f"  {when}  {entry.event:<9} {entry.source or '-'} -> {entry.dest}{error}")

    run_command(work)


@flows.command("purge")
@store_option
def flows_purge(store: str | None) -> None:
    """Remove flows whose time has passed (pending flows expire after the spec's ttl)."""

    async def work() -> None:
        backend = await _with_store(store)
        try:
            click.echo(f"purged {await backend.purge(time.time())} flow(s)")
        finally:
            await backend.aclose()

    run_command(work)


@click.group()
def tokens() -> None:
    """List, show, refresh and delete stored tokens (shown by fingerprint only)."""


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
        backend = await _with_store(store)
        try:
            found = await backend.list_tokens(provider=provider, expiring_before=before)
        finally:
            await backend.aclose()
        if as_json:
            _emit([token_summary(t) for t in found])
            return
        now = time.time()
        rows = [
            [t.key, t.fingerprint, _ago(t.expires_at, now), t.scope or "", "dead" if t.dead else "ok"]
            for t in sorted(found, key=lambda t: t.key)
        ]
        _table(["KEY", "FINGERPRINT", "EXPIRES", "SCOPE", "STATUS"], rows)

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
        backend = await _with_store(store)
        try:
            token = await backend.get_token(key)
        finally:
            await backend.aclose()
        if token is None:
            raise FlowStateError(f"no token {key!r} in the store", code="token_unknown")
        summary = token_summary(token)
        if as_json:
            _emit(summary)
            return
        now = time.time()
        summary["expires_at"] = _ago(token.expires_at, now)
        summary["obtained_at"] = _ago(token.obtained_at, now)
        summary["account"] = str(token.account)
        for name, value in summary.items():
            click.echo(f"{name + ':':<14}{value}")

    run_command(work)


def _credentials(token: Token) -> Client:
    """The client to refresh with: FLOWENGINE_<SPEC>_CLIENT_ID / _CLIENT_SECRET."""
    prefix = "FLOWENGINE_" + re.sub(r"[^A-Z0-9]", "_", token.provider.upper())
    secret = os.environ.get(f"{prefix}_CLIENT_SECRET")
    client_id = os.environ.get(f"{prefix}_CLIENT_ID") or token.client_id
    if not client_id or not secret:
        raise ConfigError(f"set {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET to refresh this token")
    return Client(client_id, secret)


@tokens.command("refresh")
@click.argument("key")
@click.option("--sandbox", is_flag=True, help="Refresh against the sandbox at FLOWENGINE_SANDBOX_URL.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def tokens_refresh(key: str, sandbox: bool, store: str | None, as_json: bool) -> None:
    """Refresh a stored token now and store the new one.

    Credentials come from FLOWENGINE_<SPEC>_CLIENT_ID and _CLIENT_SECRET, or,
    with --sandbox, from the running sandbox at FLOWENGINE_SANDBOX_URL.

    \b
    Example:
      FLOWENGINE_SANDBOX_URL=http://127.0.0.1:8790 flowengine tokens refresh podio:user:1001 --sandbox
    """
    sandbox_url = os.environ.get("FLOWENGINE_SANDBOX_URL")
    if sandbox and not sandbox_url:
        click.echo(
            "--sandbox refreshes against a running sandbox: start `flowengine sandbox serve` "
            "and set FLOWENGINE_SANDBOX_URL",
            err=True,
        )
        sys.exit(EXIT_USAGE)

    async def work() -> int:
        backend = await _with_store(store)
        engine: AsyncEngine | None = None
        try:
            token = await backend.get_token(key)
            if token is None:
                raise FlowStateError(f"no token {key!r} in the store", code="token_unknown")
            spec = spec_argument(token.provider)
            if sandbox:
                box = plugins.open_sandbox(spec, sandbox_url)
                client, endpoints = box.client, dict(box.endpoints)
            else:
                client, endpoints = _credentials(token), {}
            engine = AsyncEngine(spec, client=client, store=backend, endpoints=endpoints)
            fresh = await engine.refresh(token)
        finally:
            await (engine.aclose() if engine is not None else backend.aclose())
        if as_json:
            _emit(token_summary(fresh))
        else:
            click.echo(f"refreshed {fresh.key}: {token.fingerprint} -> {fresh.fingerprint}")
        return 0

    sys.exit(run_command(work) or 0)


@tokens.command("delete")
@click.argument("key")
@store_option
def tokens_delete(key: str, store: str | None) -> None:
    """Delete a stored token (the provider still considers it valid until it expires).

    \b
    Example:
      flowengine tokens delete podio:user:1001
    """

    async def work() -> bool:
        backend = await _with_store(store)
        try:
            return await backend.delete_token(key)
        finally:
            await backend.aclose()

    if not run_command(work):
        click.echo(f"no token {key!r} in the store", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"deleted {key}")
