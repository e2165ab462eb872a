"""Reading ``sqlite://`` URLs, and where the CLI keeps its store by default."""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import parse_qsl

import attrs
from flowengine import ConfigError

__all__ = ["SCHEME", "SQLiteTarget", "default_url", "parse_url"]

SCHEME = "sqlite"
_PREFIX = SCHEME + "://"
_OPTIONS = frozenset({"key_file", "timeout"})
_DEFAULT_TIMEOUT = 5.0


@attrs.frozen(slots=True)
class SQLiteTarget:
    """What a ``sqlite://`` URL asks for: the database file, the busy timeout, the codec options."""

    path: Path
    timeout: float = _DEFAULT_TIMEOUT
    options: dict[str, str] = attrs.field(factory=dict)


def _invalid(url: str, why: str) -> ConfigError:
    # The query may name a key file; only the part before it is repeated back.
    shown = url.split("?", 1)[0]
    return ConfigError(f"the SQLite store URL {shown!r} {why}", code="store_url_invalid")


def parse_url(url: str) -> SQLiteTarget:
    """The file and options of ``sqlite://PATH?key_file=...&timeout=...``.

    Everything between ``sqlite://`` and the first ``?`` is the path, taken
    literally (no percent-decoding), so ``sqlite:///abs/x.db`` is absolute,
    ``sqlite://x.db`` is relative to the working directory and ``~`` is
    expanded. Unknown or repeated options are refused rather than ignored: a
    mistyped ``key_file`` must not silently leave tokens unencrypted.
    """
    if not url.startswith(_PREFIX):
        raise _invalid(url, "must start with 'sqlite://' (an absolute path gives three slashes)")
    raw_path, _, query = url[len(_PREFIX) :].partition("?")
    if not raw_path:
        raise _invalid(url, "has no path (write sqlite:///absolute/path.db)")
    if raw_path.endswith("/"):
        raise _invalid(url, "names a folder, not a database file")
    if "\x00" in raw_path:
        raise _invalid(url, "has a NUL character in its path")
    if raw_path == ":memory:":
        raise _invalid(url, "names an in-memory database; use 'memory://' for a store that is not kept")
    pairs = parse_qsl(query, keep_blank_values=True)
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in _OPTIONS:
            known = ", ".join(sorted(_OPTIONS))
            raise _invalid(url, f"has an unknown option {name!r} (known: {known})")
        if name in options:
            raise _invalid(url, f"gives the option {name!r} twice")
        options[name] = value
    if options.get("key_file") == "":
        raise _invalid(url, "has an empty key_file (leave the option out to use FLOWENGINE_KEY)")
    timeout = _DEFAULT_TIMEOUT
    if "timeout" in options:
        try:
            timeout = float(options.pop("timeout"))
        except ValueError:
            timeout = math.nan
        if not math.isfinite(timeout) or timeout < 0:
            raise _invalid(url, "has a timeout that is not a number of seconds >= 0")
    return SQLiteTarget(Path(raw_path).expanduser().absolute(), timeout, options)


def default_url() -> str:
    """The CLI's store: ``sqlite://$XDG_DATA_HOME/flowengine/flowengine.db`` as an absolute path.

    ``XDG_DATA_HOME`` defaults to ``~/.local/share``; a relative value is
    ignored, as the XDG Base Directory specification asks.
    """
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return _PREFIX + str(root / "flowengine" / "flowengine.db")
