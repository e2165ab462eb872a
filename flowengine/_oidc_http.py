"""What the OIDC modules share about HTTP: one URL judge, bounded JSON, and cache freshness.

``url_problem`` judges a provider URL (the issuer, every endpoint of a discovery document)
with the project's one WHATWG URL judge, ``_urls.judge``. ``fresh_until`` reads RFC 9111's
freshness (``Cache-Control``, ``Expires``, ``Age``) as a private cache does, bounded by a
floor and a cap, so that a provider saying ``max-age=31536000`` cannot pin keys for a year and one saying
``no-store`` gets refetched rather than ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from flowengine._errors import FlowError
from flowengine._http import HttpRequest, HttpResponse
from flowengine._urls import UrlRefused, judge

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "CachePolicy",
    "freeze_json",
    "fresh_until",
    "get_json_request",
    "read_json_object",
    "url_problem",
]

#: A discovery document or key set larger than this is refused before parsing.
MAX_DOCUMENT_BYTES = 256 * 1024
#: Claims and documents nested deeper than this are refused (nothing in OIDC nests past 3).
MAX_DEPTH = 16

_JSON_TYPES = ("application/json", "application/jwk-set+json")


def url_problem(url: str) -> str | None:
    """Why ``url`` may not name a provider endpoint or issuer, or None when it may.

    The project's one URL judge (``_urls.judge``, SECURITY.md 27): an absolute http(s) URL
    every parser reads alike (no user information, fragment, whitespace, backslash, control
    character, percent-escaped host, IPv4 in odd notations or empty label), and ``https``
    unless the host is loopback.
    """
    try:
        parsed = judge(url)
    except UrlRefused as exc:
        return exc.reason
    if parsed.scheme == "http" and not parsed.loopback:
        return "uses http:// off loopback; use https://"
    return None


def get_json_request(url: str, user_agent: str = "flowengine") -> HttpRequest:
    """A GET asking for JSON, carrying no credential."""
    return HttpRequest("GET", url, {"accept": "application/json", "user-agent": user_agent})


def read_json_object(
    response: HttpResponse,
    *,
    what: str,
    fail: Callable[[str], FlowError],
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> dict[str, Any]:
    """The body of a 200 answer as a JSON object, or ``fail(message)`` raised.

    Too large, not JSON, nested past the parser's depth or holding 5,000-digit numbers:
    each is the same typed refusal, never a ``RecursionError`` or ``ValueError``.
    """
    if len(response.body) > max_bytes:
        raise fail(f"{what} is larger than {max_bytes} bytes")
    content_type = response.content_type
    if content_type and content_type not in _JSON_TYPES and not content_type.endswith("+json"):
        raise fail(f"{what} is {content_type[:60]!r}, not JSON")
    try:
        value = json.loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise fail(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise fail(f"{what} is not a JSON object")
    return value


@attrs.frozen(slots=True)
class CachePolicy:
    """How long a document is kept when its headers say nothing, at least and at most (seconds)."""

    default_ttl: float = 3600.0
    min_ttl: float = 0.0
    max_ttl: float = 86400.0

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.min_ttl <= self.max_ttl or not self.min_ttl <= self.default_ttl <= self.max_ttl:
            raise ValueError("cache policy needs 0 <= min_ttl <= default_ttl <= max_ttl")


def fresh_until(response: HttpResponse, now: float, policy: CachePolicy = CachePolicy()) -> float:
    """The time until which ``response`` may be reused without asking again (RFC 9111 §4.2).

    ``no-store``/``no-cache`` give 0 s, ``max-age`` wins over ``Expires`` (read against
    ``Date`` when present), ``Age`` is subtracted; no header gives the policy's default.
    The result is clamped to the policy's floor and cap.
    """
    directives = _cache_control(response.headers.get("cache-control", ""))
    if "no-store" in directives or "no-cache" in directives:
        lifetime = 0.0
    elif (max_age := _seconds(directives.get("max-age"))) is not None:
        lifetime = max_age - _age(response)
    elif "expires" in response.headers:
        lifetime = _expires_lifetime(response, now) - _age(response)
    else:
        lifetime = policy.default_ttl
    return now + min(max(lifetime, policy.min_ttl), policy.max_ttl)


def _cache_control(value: str) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for part in value.split(","):
        name, sep, argument = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = argument.strip().strip('"') if sep else None
    return directives


def _seconds(value: str | None) -> float | None:
    """A delta-seconds value (digits only, RFC 9111 §1.2.2), or None when absent or invalid."""
    if value is None or not value.isdigit() or len(value) > 12:
        return None
    return float(value)


def _age(response: HttpResponse) -> float:
    return _seconds(response.headers.get("age")) or 0.0


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    from email.utils import parsedate_to_datetime  # email.* costs ms at import; dates are rare

    try:
        moment = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if math.isfinite(moment) else None


def _expires_lifetime(response: HttpResponse, now: float) -> float:
    """``Expires`` minus ``Date`` (or now); an unreadable ``Expires`` means already stale (§5.3)."""
    expires = _http_date(response.headers.get("expires"))
    if expires is None:
        return 0.0
    date = _http_date(response.headers.get("date"))
    return expires - (date if date is not None else now)


def freeze_json(value: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A read-only deep copy (mappings as ``MappingProxyType``, lists as tuples); None if too deep."""
    try:
        frozen: Mapping[str, Any] = _freeze(value, 0)
    except _TooDeep:
        return None
    return frozen


class _TooDeep(Exception):
    pass


def _freeze(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v, depth + 1) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item, depth + 1) for item in value)
    return value
