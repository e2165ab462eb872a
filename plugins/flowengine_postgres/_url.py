"""Reading a ``postgresql://`` store URL: where to connect, which schema, how big a pool.

Parsing is pure Python and happens in ``open_store`` (so a bad URL fails at once,
in sync code, without importing psycopg). Error messages are built from the
parts of the URL, never from the URL itself, so a password cannot leak into one.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs
from flowengine import ConfigError

__all__ = ["SCHEMES", "PostgresURL", "parse_url"]

SCHEMES = frozenset({"postgresql", "postgres"})

# Options flowengine reads itself.
_STORE_OPTIONS = frozenset({"schema", "key_file", "min_size", "max_size", "command_timeout"})
# libpq connection parameters passed through as they are: timeouts and TLS are
# deployment matters. Anything else is refused, so a typo (``shema=``) cannot
# silently put a worker on another schema than its peers.
_LIBPQ_OPTIONS = frozenset(
    {"connect_timeout", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "application_name"}
)
_DEFAULT_CONNECT_TIMEOUT = 10
_DEFAULT_COMMAND_TIMEOUT = 5.0

# Unquoted-identifier characters only, so the name needs no escaping anywhere.
# 63 bytes is NAMEDATALEN - 1: PostgreSQL would silently truncate a longer name,
# and two workers with different long names would then share one schema.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _invalid(message: str) -> ConfigError:
    return ConfigError(f"postgres store URL: {message}", code="store_url_invalid")


@attrs.frozen(slots=True)
class PostgresURL:
    """Where a PostgreSQL store lives and how it connects; the password is kept out of ``repr``."""

    host: str
    port: int
    dbname: str
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    schema: str = "flowengine"
    key_file: str | None = None
    min_size: int = 1
    max_size: int = 10
    libpq: dict[str, str] = attrs.field(factory=dict)
    command_timeout: float = _DEFAULT_COMMAND_TIMEOUT

    @property
    def address(self) -> str:
        """``user@host:port/db``: what error messages and logs name (never the password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}:{self.port}/{self.dbname}"

    @property
    def connect_timeout(self) -> int:
        """Seconds libpq waits for a connection (0: forever); also bounds waits for a pooled one."""
        return int(self.libpq.get("connect_timeout", _DEFAULT_CONNECT_TIMEOUT))

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.AsyncConnection.connect`` (password included)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "application_name": "flowengine",
            **self.libpq,
            "connect_timeout": self.connect_timeout,
        }
        if self.user:
            kwargs["user"] = self.user
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs


def _int_option(options: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise _invalid(f"{name}={raw!r} is not a whole number >= {minimum}")
    return int(raw)


def _seconds_option(options: dict[str, str], name: str, default: float) -> float:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise _invalid(f"{name}={raw!r} is not a positive number of seconds")
    return value


def _options(query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _STORE_OPTIONS | _LIBPQ_OPTIONS:
            known = ", ".join(sorted(_STORE_OPTIONS | _LIBPQ_OPTIONS))
            raise _invalid(f"unknown option {name!r} (known: {known})")
        if name in options:
            raise _invalid(f"option {name!r} is given twice")
        if not value:
            raise _invalid(f"option {name!r} is empty")
        options[name] = value
    return options


def parse_url(url: str) -> PostgresURL:
    """The parts of ``postgresql://user[:password]@host[:port]/db[?options]``.

    ``ConfigError`` (``store_url_invalid``) names what is wrong: a missing host or
    database, a bad port, an unknown or repeated option, a schema that is not a
    plain identifier, pool sizes that do not fit.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced '[' in an IPv6 host
        raise _invalid("it cannot be parsed as a URL") from None
    if parts.scheme.lower() not in SCHEMES:
        raise _invalid(f"the scheme must be postgresql:// or postgres://, not {parts.scheme!r}")
    if parts.fragment:
        raise _invalid("it has a '#' fragment (percent-encode '#' as %23 in a password)")
    host = parts.hostname
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise _invalid("the port is not a number between 1 and 65535")
    if not host:
        raise _invalid("it names no host (postgresql://user@host:5432/db)")
    dbname = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not dbname:
        raise _invalid("it names no database (postgresql://user@host:5432/db)")
    options = _options(parts.query)

    schema = options.get("schema", "flowengine")
    if not _IDENTIFIER.fullmatch(schema):
        raise _invalid(
            f"schema={schema!r} is not a plain identifier (1-63 letters, digits or '_'; no leading digit)"
        )
    if schema.lower().startswith("pg_"):
        raise _invalid(f"schema={schema!r}: the 'pg_' prefix is reserved by PostgreSQL")
    min_size = _int_option(options, "min_size", 1, 0)
    max_size = _int_option(options, "max_size", max(10, min_size), 1)
    if max_size < min_size:
        raise _invalid(f"max_size={max_size} is smaller than min_size={min_size}")
    _int_option(options, "connect_timeout", _DEFAULT_CONNECT_TIMEOUT, 0)

    return PostgresURL(
        host=host,
        port=port or 5432,
        dbname=dbname,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        schema=schema,
        key_file=options.get("key_file"),
        min_size=min_size,
        max_size=max_size,
        libpq={name: value for name, value in options.items() if name in _LIBPQ_OPTIONS},
        command_timeout=_seconds_option(options, "command_timeout", _DEFAULT_COMMAND_TIMEOUT),
    )
