"""``flowengine token header SPEC [ACCOUNT]``: the ``Authorization`` header, ready for curl.

``curl -H "$(flowengine token header podio)" https://api.podio.com/user/status``
just works: the stored token is refreshed first when it expires within
``--min-validity`` (another process running the same command waits for that
one refresh, through the store's lease), and the line printed is the whole
header (``Authorization: OAuth2 …``, the scheme the spec names).

This is the one command that prints a token, because that is its purpose. It
refuses to print it on a terminal screen (scrollback, screen sharing) unless
``--reveal`` says so; command substitution and pipes are not terminals.
"""

from __future__ import annotations

import logging
import sys
import time

import click
from flowengine import ConfigError, FlowStateError, ProviderError, Token, open_sandbox
from flowengine.cli import (
    complete_spec,
    opened_store,
    parse_duration,
    run_command,
    spec_argument,
    store_option,
)

from .records import client_id_option, refreshing_engine, running_sandbox, sandbox_option

log = logging.getLogger("flowengine.cli")

__all__ = ["choose_token", "token"]


def choose_token(tokens: list[Token], spec_name: str, account: str | None) -> Token:
    """The token of ``spec_name`` for ``account`` (``user:1001``, ``1001``, or a whole key), or its only one.

    Several tokens and no account is a ``ConfigError`` listing their keys: picking
    one silently could act as the wrong person.
    """
    if account is not None:
        found = [t for t in tokens if account in (str(t.account), str(t.account.id), t.key)]
    else:
        found = tokens
    if len(found) == 1:
        return found[0]
    if not found:
        whose = f" for account {account!r}" if account else ""
        raise FlowStateError(
            f"no {spec_name} token{whose} in the store: run `flowengine login {spec_name}` first",
            code="token_unknown",
        )
    keys = ", ".join(sorted(t.key for t in found))
    raise ConfigError(f"several {spec_name} tokens match ({keys}): name the ACCOUNT, e.g. {found[0].account}")


@click.group()
def token() -> None:
    """Use a stored token: `flowengine token header`."""


@token.command("header")
@click.argument("spec_ref", metavar="SPEC", shell_complete=complete_spec)
@click.argument("account", required=False)
@click.option(
    "--min-validity",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="Refresh first when the token expires within this (90s, 5m, 1h).",
)
@click.option("--value-only", is_flag=True, help="Print only the value (`OAuth2 …`), not `Authorization: `.")
@click.option(
    "--reveal", is_flag=True, help="Print even when stdout is a terminal (the token shows on screen)."
)
@sandbox_option
@client_id_option
@store_option
def token_header(
    spec_ref: str,
    account: str | None,
    min_validity: str,
    value_only: bool,
    reveal: bool,
    sandbox: bool,
    client_id: str | None,
    store: str | None,
) -> None:
    """Print the `Authorization` header for a stored token, refreshing it first when it is about to expire.

    ACCOUNT is `TYPE:ID` or `ID` (Podio: `user:1001`); it may be left out when
    the store holds one token for SPEC. Exit 4 when there is no such token, it
    expired and cannot be refreshed, or the provider refuses the refresh.

    \b
    Example:
      curl -H "$(flowengine token header podio)" https://api.podio.com/user/status
    """
    margin = parse_duration(min_validity)
    if sys.stdout.isatty() and not reveal:
        raise click.UsageError(
            "refusing to print a token on the terminal: use it as "
            f'curl -H "$(flowengine token header {spec_ref})" …, pipe it, or pass --reveal'
        )

    async def work() -> str:
        where = running_sandbox(sandbox, "token header")
        spec = spec_argument(spec_ref)
        if where is not None:
            with open_sandbox(spec, where) as box:  # --sandbox: one must answer there, refresh or not
                log.debug("the sandbox at %s answers", box.url)
        async with opened_store(store, reading=True) as backend:
            current = choose_token(await backend.list_tokens(provider=spec.name), spec.name, account)
            if current.dead:
                raise ProviderError(
                    f"the grant of {current.key} is dead: run `flowengine login {spec.name}` again",
                    code="invalid_grant",
                )
            if current.expires_within(margin, time.time()):
                if not current.refresh_token:
                    raise FlowStateError(
                        f"{current.key} expires within {min_validity} and has no refresh token: "
                        f"run `flowengine login {spec.name}` again",
                        code="no_refresh_token",
                    )
                async with await refreshing_engine(
                    current, backend, sandbox=where, client_id=client_id, spec_ref=spec_ref
                ) as engine:
                    current = await engine.refresh(current)
        value = current.authorization_header()
        return value if value_only else f"Authorization: {value}"

    click.echo(run_command(work))
