"""A provider's answer read as the data it stands for: JSON, form-encoded or a query string.

Token endpoints do not all answer JSON: GitHub's classic answer is
``access_token=...&token_type=bearer`` as ``application/x-www-form-urlencoded``,
and some old endpoints send that as ``text/plain``. ``answer_body`` tells them
apart by the content type (trying JSON, then a query string, when the type says
nothing useful) and never raises: what cannot be read is an ``Unreadable``.

Fields are found by dotted paths (Slack's ``authed_user.access_token``); expiry
comes from a relative ``expires_in`` in seconds or milliseconds, or an absolute
``expires_at`` (epoch seconds, or an ISO 8601 time).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

import attrs

from flowengine._bounded import parse_json

__all__ = ["MAX_EXPIRES_IN", "Unreadable", "answer_body", "dig", "expires_in_seconds", "seconds_until"]

#: Ten years: an expiry further away is nonsense, not a long-lived token.
MAX_EXPIRES_IN = 10 * 365 * 86400
_MAX_FIELDS = 100
_QUERY_STRING = re.compile(rb"[A-Za-z0-9_.~%+-]+=[^&\s]*(?:&[A-Za-z0-9_.~%+-]+=[^&\s]*)*\s*")
_FORM = "application/x-www-form-urlencoded"


@attrs.frozen(slots=True)
class Unreadable:
    """An answer that is neither JSON nor a form, and why."""

    why: str


def _json(body: bytes) -> Any:
    """The JSON value of ``body``, read within bounds (``_bounded.parse_json``); ``ValueError`` if not.

    Too deep or with over-long numbers is not JSON here (SECURITY.md 26).
    """
    return parse_json(body)


def _form(body: bytes) -> dict[str, str] | Unreadable:
    try:
        pairs = parse_qsl(
            body.decode("utf-8").strip(),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=_MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        return Unreadable("a form body that cannot be read")
    fields = dict(pairs)
    if len(fields) != len(pairs):
        return Unreadable("a form body that repeats a field")
    return fields


def answer_body(body: bytes, content_type: str) -> Any:
    """The data an answer carries, read as its content type says; ``Unreadable`` when it carries none.

    ``application/x-www-form-urlencoded`` is a form. Anything else is JSON if it
    parses as JSON (a token labelled ``text/html`` by a proxy is still a token);
    else ``text/plain`` or no type at all is a query string if it looks like one.
    HTML, and anything else, is unreadable.
    """
    kind = content_type.split(";")[0].strip().lower()
    if kind == _FORM:
        return _form(body)
    try:
        return _json(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        if kind in ("text/plain", "") and _QUERY_STRING.fullmatch(body):
            return _form(body)
        why = _json_problem(body)
        if why is not None:
            return Unreadable(why)
        return Unreadable(f"a {kind or 'untyped'} body" + (" that is not JSON" if "json" in kind else ""))


def _json_problem(body: bytes) -> str | None:
    """Why a body that looks like JSON was refused (nested too deeply, a number too long), or None."""
    try:
        parse_json(body)
    except ValueError as exc:
        return str(exc) if "nested deeper" in str(exc) or "number" in str(exc) else None
    return None


def dig(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``ref.id``), or None; a key that itself holds dots is found too."""
    if path in data:
        return data[path]
    if "." not in path:
        return None
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(raw: Any, what: str) -> float:
    """A finite number from a JSON number or a string of digits; ``ValueError`` saying what it is not."""
    if isinstance(raw, bool):
        raise ValueError(f"{what} is a boolean, not a number")
    if isinstance(raw, int) and abs(raw) > 10**15:
        raise ValueError(f"{what} is absurdly large")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit() and len(raw.strip()) <= 16:
        value = float(int(raw.strip()))
    else:
        raise ValueError(f"{what} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{what} is not finite")
    return value


def expires_in_seconds(raw: Any, unit: Literal["seconds", "milliseconds"] = "seconds") -> int | None:
    """Seconds until expiry from a relative ``expires_in``; ``ValueError`` when it is no such thing."""
    if raw is None:
        return None
    value = _number(raw, "expires_in")
    if unit == "milliseconds":
        value /= 1000
    if value < 0 or value > MAX_EXPIRES_IN:
        raise ValueError("expires_in is negative or absurdly large")
    return int(value)


def seconds_until(raw: Any, now: float) -> int | None:
    """Seconds from ``now`` until an absolute expiry (epoch seconds, or ISO 8601 with a zone).

    An expiry already past counts as 0 (the token is to be refreshed at once);
    ``ValueError`` for what is not a time, or one absurdly far away.
    """
    if raw is None:
        return None
    if isinstance(raw, str) and not raw.strip().isdigit():
        try:
            when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expires_at is not a time") from None
        if when.tzinfo is None:
            raise ValueError("expires_at has no time zone")
        at = when.timestamp()
    else:
        at = _number(raw, "expires_at")
    left = at - now
    if left > MAX_EXPIRES_IN:
        raise ValueError("expires_at is absurdly far away")
    return max(0, int(left))
