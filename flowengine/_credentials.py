"""Where a command gets its client: flags, then environment, then config file, then a prompt.

The order is the usual one (the most specific wins) so that a config file holds
the everyday values and a flag or variable overrides them for one run. The
secret is never echoed: it is read from ``FLOWENGINE_<SPEC>_CLIENT_SECRET``,
the config file, or a prompt without echo. Every command that needs a client
(``login``, ``tokens refresh``, ``token header``, ``batch``) reads the same
sources through ``flowengine.cli.resolve_client``.

The config file is ``$XDG_CONFIG_HOME/flowengine/config.toml``
(``~/.config/flowengine/config.toml``), one table per spec name::

    [podio]
    client_id = "my-app"
    client_secret = "…"
    redirect_uri = "https://example.com/flowengine/callback"
"""

from __future__ import annotations

import getpass
import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

import attrs
import click

from flowengine._client import Client
from flowengine._errors import ConfigError

__all__ = [
    "CONFIG_KEYS",
    "ClientSettings",
    "config_path",
    "env_prefix",
    "load_config",
    "readable_by_others",
    "resolve_client",
]

#: The keys a spec's table in config.toml may hold; anything else is a mistake worth naming.
CONFIG_KEYS = frozenset({"client_id", "client_secret", "redirect_uri", "registered_domain", "scope"})


def env_prefix(spec_name: str) -> str:
    """``FLOWENGINE_PODIO`` for ``podio``: the spec name upper-cased, other characters as ``_``."""
    return "FLOWENGINE_" + re.sub(r"[^A-Z0-9]", "_", spec_name.upper())


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/flowengine/config.toml``, ``~/.config/…`` when the variable is unset."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "flowengine" / "config.toml"


def load_config(spec_name: str, path: Path | None = None, *, warn: bool = True) -> dict[str, str]:
    """The spec's table of the config file ({} when there is no file or no table).

    A malformed file, a table that is not one, an unknown key or a value that is
    not text is a ``ConfigError`` naming the file and key: silently ignoring a
    typo (``client_secert``) would send the person to a confusing prompt. With
    ``warn``, a file holding a secret that other users can read gets a warning on stderr.
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
    if warn and "client_secret" in table and readable_by_others(path):
        click.echo(
            f"Warning: {path} holds a client secret and is readable by other users; run: chmod 600 {path}",
            err=True,
        )
    return dict(table)


def readable_by_others(path: Path) -> bool:
    """True when users other than the owner may read ``path`` (ssh refuses such key files)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


@attrs.frozen
class ClientSettings:
    """What a login needs beyond the spec: the client and where the provider sends the person back."""

    client: Client
    redirect_uri: str | None = None
    scope: str | None = None


class _EndOfInput(Exception):
    """The person ended a prompt with Ctrl-D (end of input)."""


def _ask(label: str, *, secret: bool) -> str:
    """One answer from the terminal; the secret without echo. Ctrl-D raises ``_EndOfInput``."""
    try:
        if secret:
            return getpass.getpass(f"{label}: ", stream=sys.stderr).strip()
        click.echo(f"{label}: ", nl=False, err=True)
        line = sys.stdin.readline()
    except EOFError:
        line = ""
    if not line:
        click.echo(err=True)
        raise _EndOfInput
    return line.strip()


@attrs.frozen
class _Lookup:
    """Finds one setting of a spec's client in the flag, the environment, then the config file."""

    spec_name: str
    env: Mapping[str, str]
    config: Mapping[str, str]

    def find(self, flag: str | None, key: str) -> tuple[str | None, str]:
        """The value and where it came from (for messages), or (None, '')."""
        variable = f"{env_prefix(self.spec_name)}_{key.upper()}"
        if flag:
            return flag, f"--{key.replace('_', '-')}"
        if self.env.get(variable):
            return self.env[variable], variable
        if self.config.get(key):
            return self.config[key], f"the [{self.spec_name}] table of {config_path()}"
        return None, ""


def _missing(spec_name: str, found_id: str | None, id_from: str, secret_from: str) -> str:
    """What is missing, named, and every place it can come from."""
    prefix, where = env_prefix(spec_name), f"the [{spec_name}] table of {config_path()}"
    if found_id and not secret_from:
        return (
            f"no client secret for {spec_name!r} (the client id {found_id!r} comes from {id_from}): "
            f"set {prefix}_CLIENT_SECRET, or add client_secret to {where}"
        )
    if secret_from:
        return (
            f"no client id for {spec_name!r} (a secret was found in {secret_from}): "
            f"pass --client-id, set {prefix}_CLIENT_ID, or add client_id to {where}"
        )
    return (
        f"no client credentials for {spec_name!r}: pass --client-id, or set {prefix}_CLIENT_ID and "
        f"{prefix}_CLIENT_SECRET, or add client_id and client_secret to {where}"
    )


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
    require_secret: bool = True,
) -> ClientSettings:
    """The client for ``spec_name``: flags, then ``FLOWENGINE_<SPEC>_…``, then config, then a prompt.

    ``default_client_id`` is the last resort for the id (a refresh uses the id the
    token was issued to). The prompt is offered only when ``prompt`` and stdin is
    a terminal; otherwise a missing value is a ``ConfigError`` (``credentials_missing``)
    that names what is missing and where it can come from, so a script fails
    clearly instead of hanging. Ctrl-D at the prompt is the same error.
    ``require_secret=False`` (a public client, or one that signs with a private key) asks for
    no secret and takes one only when it is given.
    """
    lookup = _Lookup(spec_name, os.environ if environ is None else environ, load_config(spec_name))
    found_id, id_from = lookup.find(client_id, "client_id")
    if not found_id and default_client_id:
        found_id, id_from = default_client_id, "the stored token"
    secret, secret_from = lookup.find(client_secret, "client_secret")
    try:
        if prompt and sys.stdin.isatty():
            if not found_id:
                found_id, id_from = _ask(f"{spec_name} client id", secret=False), "the prompt"
            if not secret and found_id and require_secret:
                secret = _ask(f"{spec_name} client secret (not shown)", secret=True)
                secret_from = "the prompt" if secret else ""
    except _EndOfInput:
        message = _missing(spec_name, found_id, id_from, secret_from)
        raise ConfigError(
            f"{message}; the prompt got end of input (Ctrl-D)", code="credentials_missing"
        ) from None
    if not found_id or (not secret and require_secret):
        raise ConfigError(_missing(spec_name, found_id, id_from, secret_from), code="credentials_missing")
    return ClientSettings(
        Client(found_id, secret or None, registered_domain=lookup.find(None, "registered_domain")[0]),
        redirect_uri=lookup.find(redirect_uri, "redirect_uri")[0],
        scope=lookup.find(scope, "scope")[0],
    )
