"""Where a terminal login gets its client: flags, then environment, then config file, then a prompt.

The order is the usual one (the most specific wins) so that a config file holds
the everyday values and a flag or variable overrides them for one run. The
secret is never echoed: it is read from ``FLOWENGINE_<SPEC>_CLIENT_SECRET``,
the config file, or a prompt without echo. ``--client-secret`` exists for
completeness and is documented as visible to other local users (``ps``).

The config file is ``$XDG_CONFIG_HOME/flowengine/config.toml``
(``~/.config/flowengine/config.toml``), one table per spec name::

    [podio]
    client_id = "my-app"
    client_secret = "…"
    redirect_uri = "https://example.com/flowengine/callback"
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

import attrs
import click
from flowengine import Client, ConfigError

__all__ = ["CONFIG_KEYS", "ClientSettings", "config_path", "env_prefix", "load_config", "resolve_client"]

#: The keys a spec's table in config.toml may hold; anything else is a mistake worth naming.
CONFIG_KEYS = frozenset({"client_id", "client_secret", "redirect_uri", "registered_domain", "scope"})


def env_prefix(spec_name: str) -> str:
    """``FLOWENGINE_PODIO`` for ``podio``: the spec name upper-cased, other characters as ``_``."""
    return "FLOWENGINE_" + re.sub(r"[^A-Z0-9]", "_", spec_name.upper())


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/flowengine/config.toml``, ``~/.config/…`` when the variable is unset."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "flowengine" / "config.toml"


def load_config(spec_name: str, path: Path | None = None) -> dict[str, str]:
    """The spec's table of the config file ({} when there is no file or no table).

    A malformed file, a table that is not one, an unknown key or a value that is
    not text is a ``ConfigError`` naming the file and key: silently ignoring a
    typo (``client_secert``) would send the person to a confusing prompt.
    """
    import tomllib

    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    table = document.get(spec_name)
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{spec_name}] must be a table of settings")
    unknown = sorted(set(table) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: [{spec_name}] has unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(CONFIG_KEYS))})"
        )
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: [{spec_name}].{key} must be a string")
    if "client_secret" in table:
        _warn_if_readable_by_others(path)
    return dict(table)


def _warn_if_readable_by_others(path: Path) -> None:
    """Warn, as ssh does for keys, when a file holding a secret is readable by others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        click.echo(
            f"Warning: {path} holds a client secret and is readable by other users; run: chmod 600 {path}",
            err=True,
        )


@attrs.frozen
class ClientSettings:
    """What a login needs beyond the spec: the client and where the provider sends the person back."""

    client: Client
    redirect_uri: str | None = None
    scope: str | None = None


def resolve_client(
    spec_name: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    redirect_uri: str | None = None,
    scope: str | None = None,
    default_client_id: str | None = None,
    prompt: bool = True,
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    """The client for ``spec_name``: flags, then ``FLOWENGINE_<SPEC>_…``, then config, then a prompt.

    ``default_client_id`` is the last resort for the id (a refresh uses the id the
    token was issued to). The prompt is offered only when ``prompt`` and stdin is
    a terminal; otherwise a missing value is a ``ConfigError`` that names the
    variables and the config file, so a script fails clearly instead of hanging.
    """
    env = os.environ if environ is None else environ
    prefix = env_prefix(spec_name)
    config = load_config(spec_name)

    def pick(flag: str | None, key: str) -> str | None:
        return flag or env.get(f"{prefix}_{key.upper()}") or config.get(key) or None

    found_id = pick(client_id, "client_id") or default_client_id
    secret = pick(client_secret, "client_secret")
    interactive = prompt and sys.stdin.isatty()
    if not found_id and interactive:
        found_id = click.prompt(f"{spec_name} client id", err=True).strip()
    if not secret and interactive and found_id:
        secret = click.prompt(f"{spec_name} client secret (not shown)", hide_input=True, err=True).strip()
    if not found_id or not secret:
        raise ConfigError(
            f"no client credentials for {spec_name!r}: pass --client-id, set {prefix}_CLIENT_ID and "
            f"{prefix}_CLIENT_SECRET, or add a [{spec_name}] table to {config_path()}"
        )
    return ClientSettings(
        Client(found_id, secret, registered_domain=pick(None, "registered_domain")),
        redirect_uri=pick(redirect_uri, "redirect_uri"),
        scope=pick(scope, "scope"),
    )
