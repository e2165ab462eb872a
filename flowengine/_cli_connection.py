"""Connection values on the command line: ``--connection subdomain=acme``, a prompt, or the sandbox's.

A spec's connection variables (``connection:``) name the tenant a flow is for.
Every command that starts flows or grants takes them the same way: the option,
then the variable's default, then (on a terminal) a prompt that shows the
variable's description; against the sandbox, a variable's ``example`` stands in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import click

from flowengine._errors import ConfigError, ErrorCode
from flowengine._spec import FlowSpec

__all__ = ["connection_option", "parse_connection", "resolve_connection"]

_F = TypeVar("_F", bound=Callable[..., Any])


def connection_option(command: _F) -> _F:
    """``--connection NAME=VALUE`` (``-c``, repeatable): the spec's connection variables."""
    return click.option(
        "--connection",
        "-c",
        "connection",
        multiple=True,
        metavar="NAME=VALUE",
        help="A connection variable of the spec (e.g. subdomain=acme); repeat for several.",
    )(command)


def parse_connection(pairs: Iterable[str]) -> dict[str, str]:
    """``["subdomain=acme"]`` as a mapping; click's usage error for a pair without ``=``."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--connection")
        values[name.strip()] = value
    return values


def resolve_connection(
    spec: FlowSpec, given: Mapping[str, str], *, sandbox: bool = False, prompt: bool = True
) -> dict[str, str]:
    """The connection values to start with: given, else default, else the example (sandbox) or a prompt.

    The values are checked by the engine (patterns, URLs) when the flow starts; a
    variable with nothing to fill it is ``ConfigError`` (``connection_invalid``)
    saying how to give it.
    """
    values = dict(given)
    for name, rule in spec.connection.items():
        if name in values or rule.default is not None or not rule.required:
            continue
        about = f" ({rule.description})" if rule.description else ""
        if sandbox and rule.example is not None:
            values[name] = rule.example
        elif prompt and not sandbox and sys.stdin.isatty():
            values[name] = click.prompt(f"{spec.name} {name}{about}", err=True).strip()
        else:
            raise ConfigError(
                f"spec {spec.name!r} needs the connection value {name!r}{about}: "
                f"pass --connection {name}=VALUE",
                code=ErrorCode.CONNECTION_INVALID,
            )
    return values
