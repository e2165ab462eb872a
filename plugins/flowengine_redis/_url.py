"""Reading a ``redis://`` store URL into the options a RedisStore needs.

Kept apart from the store so that choosing a store (the ``flowengine_store``
hook asks every plugin about every URL) never imports redis-py itself.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs
from flowengine import ConfigError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_PREFIX",
    "DEFAULT_RETENTION",
    "DEFAULT_TIMEOUT",
    "RedisOptions",
    "parse_redis_url",
]

SCHEMES = ("redis", "rediss")
DEFAULT_PREFIX = "flowengine:"
DEFAULT_RETENTION = 3600.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
_OPTIONS = ("connect_timeout", "key_file", "prefix", "retention", "timeout")


@attrs.frozen(slots=True)
class RedisOptions:
    """Where the Redis server is and how the store lays out its keys there.

    ``address`` is the URL without credentials or options: it is what error
    messages and ``repr`` show, so a password never reaches a log. ``timeout``
    bounds each wait for a reply (a server that stops answering fails the call
    with ``store_unavailable`` after it), ``connect_timeout`` each new connection.
    """

    host: str
    port: int
    db: int
    ssl: bool
    username: str | None = attrs.field(repr=False)
    password: str | None = attrs.field(repr=False)
    prefix: str = DEFAULT_PREFIX
    retention: float = DEFAULT_RETENTION
    timeout: float = DEFAULT_TIMEOUT
    key_file: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def address(self) -> str:
        """``redis://host:port/db`` (or ``rediss://``), safe to show anywhere."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.ssl else 'redis'}://{host}:{self.port}/{self.db}"

    @property
    def codec_options(self) -> dict[str, str]:
        """The options ``flowengine._codec.codec_for`` reads (the key file, when given)."""
        return {"key_file": self.key_file} if self.key_file else {}


def parse_redis_url(url: str) -> RedisOptions | None:
    """The options of a ``redis://``/``rediss://`` URL; None for any other scheme.

    ``redis://[[user]:password@]host[:port][/db][?prefix=P&retention=S&timeout=S&connect_timeout=S&key_file=PATH]``.
    Host, port and db default to ``localhost``, 6379 and 0 as in every Redis
    client. An unknown or repeated option is refused rather than ignored: a
    mistyped ``prefx=`` would otherwise silently mix two deployments' keys.
    Raises ``ConfigError`` (``store_url_invalid``) naming what is wrong, never the password.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in SCHEMES:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced '[' in an IPv6 host
        raise _invalid(f"{scheme}://…", "it cannot be parsed as a URL") from None
    shown = f"{scheme}://{parts.hostname or 'localhost'}"
    try:
        port = parts.port or 6379
    except ValueError:
        raise _invalid(shown, "the port is not a number from 0 to 65535") from None
    shown = f"{shown}:{port}"
    db_text = parts.path.lstrip("/")
    if not db_text:
        db = 0
    elif db_text.isdigit() and db_text.isascii():
        db = int(db_text)
    else:
        raise _invalid(shown, f"the database must be a number, not {db_text!r}")
    if parts.fragment:
        raise _invalid(shown, "a store URL has no #fragment")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _OPTIONS:
            raise _invalid(shown, f"unknown option {name!r} (known: {', '.join(_OPTIONS)})")
        if name in options:
            raise _invalid(shown, f"the option {name!r} is given twice")
        options[name] = value
    prefix = options.get("prefix", DEFAULT_PREFIX)
    if not prefix:
        # An empty prefix would make cleanup and listing reach every key in the database.
        raise _invalid(shown, "prefix= must not be empty")
    return RedisOptions(
        host=parts.hostname or "localhost",
        port=port,
        db=db,
        ssl=scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        prefix=prefix,
        retention=_seconds(options, "retention", DEFAULT_RETENTION, shown),
        timeout=_seconds(options, "timeout", DEFAULT_TIMEOUT, shown),
        key_file=options.get("key_file") or None,
        connect_timeout=_seconds(options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, shown),
    )


def _seconds(options: dict[str, str], name: str, default: float, shown: str) -> float:
    text = options.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise _invalid(shown, f"{name}= must be a positive number of seconds, not {text!r}")
    return value


def _invalid(shown: str, why: str) -> ConfigError:
    return ConfigError(f"Redis store URL {shown}: {why}", code="store_url_invalid")
