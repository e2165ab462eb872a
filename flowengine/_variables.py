"""Which variables a template may name where, and the values of the per-connection ones.

A template is filled from the values one request has: the authorization request
has a ``state`` but no ``code``; a refresh has a ``refresh_token`` but no
``scope``. ``available`` says, for each place a template can be, which names it
may use, so that a template that can never be filled is a spec problem rather
than a parameter silently left out.

Connection variables (``connection:``) are given when a flow starts and kept
callback parameters (``callback.keep``) arrive with the callback; both must match
their pattern, and both may be put into endpoints. ``resolve_endpoint`` fills an
endpoint and judges the URL it makes as the spec's own endpoints are judged, so
no value can turn ``https://{subdomain}.zendesk.com`` into another host.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from flowengine import _templates
from flowengine._errors import CallbackError, ConfigError, ErrorCode
from flowengine._spec import ConnectionVariable, FlowSpec, KeptParameter

__all__ = [
    "URL_SAFE_VALUE",
    "VALUE_MAX",
    "available",
    "compiled",
    "connection_values",
    "endpoint_variables",
    "endpoints_for",
    "fill_endpoint",
    "kept_values",
    "matched_value",
    "request_places",
    "url_problem",
]

#: What a value put into an endpoint may hold: nothing that starts a query or fragment or
#: carries user information (``? # @ \`` and spaces). A ``/`` may extend a path (a
#: tenant's base URL, ``api.example.com/fhir/r4``), never change the host (``fill_endpoint``).
URL_SAFE_VALUE = re.compile(r"[A-Za-z0-9._~:/-]+")
#: The longest value a connection variable or kept parameter may have.
VALUE_MAX = 256

_PKCE = frozenset({"code_challenge", "code_challenge_method", "code_verifier"})
#: What the client registration gives every token request (``redirect_uri``: the client's own,
#: which the code exchange replaces with the flow's).
_CLIENT = frozenset({"client_id", "client_secret", "redirect_uri"})
#: Grants whose requests come after a callback, so kept callback values exist for them.
_AFTER_CALLBACK = frozenset({"authorization_code", "refresh_token"})


def available(spec: FlowSpec, place: str) -> frozenset[str]:
    """The variables a template at ``place`` can have values for.

    ``place`` is ``authorization``, ``grant:NAME``, ``revocation`` or ``endpoint:NAME``
    (an endpoint is filled only from connection and kept values, never from secrets).
    """
    connection = frozenset(spec.connection)
    kept = spec.kept_names
    inputs = frozenset(spec.inputs)
    pkce = _PKCE if spec.pkce else frozenset()
    if place == "authorization":
        names = {"client_id", "redirect_uri", "scope", "state", "nonce"} | inputs | connection
        return frozenset(names | (pkce - {"code_verifier"}))
    if place == "revocation":
        return _CLIENT | {"token", "token_type_hint"} | connection | kept
    if place == "grant:authorization_code":
        return _CLIENT | {"code", "redirect_uri", "scope"} | (pkce & {"code_verifier"}) | connection | kept
    if place == "grant:refresh_token":
        return _CLIENT | {"refresh_token"} | connection | kept
    if place == "device":
        return _CLIENT - {"redirect_uri"} | {"scope"} | connection
    if spec.device is not None and place == f"grant:{spec.device.grant}":
        return _CLIENT | {"device_code"} | connection
    if place.startswith("grant:"):
        return _CLIENT | {"scope"} | inputs | connection
    if place.startswith("endpoint:"):
        users = [p for p in request_places(spec) if _endpoint_of(spec, p) == place[len("endpoint:") :]]
        after_callback = bool(users) and all(p in _after_callback_places() for p in users)
        # The client id is no secret and is known before anything (Checkr's /authorize/{client_id}).
        return frozenset({"client_id"}) | connection | (kept if after_callback else frozenset())
    raise ValueError(f"unknown place {place!r}")


def _after_callback_places() -> frozenset[str]:
    return frozenset({"revocation", *(f"grant:{g}" for g in _AFTER_CALLBACK)})


def request_places(spec: FlowSpec) -> list[str]:
    """Every request of the spec, as a place (``authorization``, ``grant:NAME``, ``revocation``)."""
    places = ["authorization"] if spec.authorization is not None else []
    places += [f"grant:{name}" for name in spec.grants]
    places += ["device"] if spec.device is not None else []
    return places + (["revocation"] if spec.revocation is not None else [])


def _endpoint_of(spec: FlowSpec, place: str) -> str:
    if place == "authorization":
        assert spec.authorization is not None
        return spec.authorization.endpoint
    if place == "revocation":
        assert spec.revocation is not None
        return spec.revocation.endpoint
    if place == "device":
        assert spec.device is not None
        return spec.device.endpoint
    return spec.grants[place[len("grant:") :]].endpoint


def endpoint_variables(template: str) -> tuple[str, ...]:
    """The variables an endpoint template names (none for a plain URL); ``TemplateError`` if malformed."""
    return _templates.variables(template)


@functools.lru_cache(maxsize=512)
def compiled(pattern: str) -> re.Pattern[str] | None:
    """The pattern compiled, or None when it is not a regular expression (validation says so)."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None


def matched_value(rule: ConnectionVariable | KeptParameter, value: str) -> str | None:
    """The value to use when ``value`` matches the rule's whole pattern (its first group, if it has one)."""
    pattern = compiled(rule.pattern)
    if len(value) > VALUE_MAX or pattern is None:
        return None
    match = pattern.fullmatch(value)
    if match is None:
        return None
    return match.group(1) if pattern.groups else value


def url_problem(url: str, judge: Callable[[str], str | None]) -> str | None:
    """Why a filled endpoint is refused: ``judge``'s reason, or a value that reshaped the URL."""
    reason = judge(url)
    if reason is not None:
        return reason
    parts = urlsplit(url)
    if "@" in parts.netloc or "\\" in url:
        return "the URL carries user information or a backslash"
    return None


def fill_endpoint(template: str, values: Mapping[str, str | None]) -> str | None:
    """The endpoint with its variables filled, or None when a value is missing or not URL-safe.

    A value may hold a ``/`` only where the URL's host stays what the value's part
    before its first ``/`` makes it: ``{subdomain}.zendesk.com`` never becomes
    ``evil.example/`` followed by the rest. No value may make a ``.`` or ``..`` path
    segment (``acme/../other``), which clients and servers resolve to another path.
    """
    names = endpoint_variables(template)
    for name in names:
        value = values.get(name)
        if value is None or not URL_SAFE_VALUE.fullmatch(value):
            return None
    url = _templates.render(template, values)
    if url is not None and any("/" in (values.get(name) or "") for name in names):
        cut = {name: (values.get(name) or "").split("/", 1)[0] for name in names}
        if _host(_templates.render(template, {**values, **cut}) or "") != _host(url):
            return None
    if url is not None and _dot_segments(url):
        return None
    return url


def _dot_segments(url: str) -> bool:
    try:
        path = urlsplit(url).path
    except ValueError:
        return True
    return any(segment in (".", "..") for segment in path.split("/"))


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return None


def endpoints_for(templates: Mapping[str, str], values: Mapping[str, str | None]) -> dict[str, str]:
    """Every endpoint that ``values`` fill completely, filled (the others are left out)."""
    filled: dict[str, str] = {}
    for name, template in templates.items():
        url = fill_endpoint(template, values)
        if url is not None:
            filled[name] = url
    return filled


def sample_values(rules: Iterable[tuple[str, ConnectionVariable | KeptParameter]]) -> dict[str, str]:
    """A URL-safe stand-in value per variable, to judge endpoint templates at load time."""
    out: dict[str, str] = {}
    for name, rule in rules:
        example = rule.example if rule.example is not None else rule.default
        value = matched_value(rule, example) if example is not None else None
        out[name] = value if value is not None and URL_SAFE_VALUE.fullmatch(value) else "x"
    return out


def connection_values(spec: FlowSpec, given: Mapping[str, str] | None) -> dict[str, str]:
    """The connection values of a flow or grant: checked, defaults filled, in the spec's order.

    ``ConfigError`` (``connection_invalid``) for a name the spec does not declare, a
    value that does not match its pattern, or a variable without value or default.
    The message names the variable and its description, never echoes a long value.
    """
    given = dict(given or {})
    undeclared = sorted(set(given) - set(spec.connection))
    if undeclared:
        declared = ", ".join(spec.connection) or "none"
        raise ConfigError(
            f"spec {spec.name!r} declares no connection variable(s) {undeclared} (it has: {declared})",
            code=ErrorCode.CONNECTION_INVALID,
        )
    values: dict[str, str] = {}
    for name, rule in spec.connection.items():
        raw = given.get(name, rule.default)
        about = f" ({rule.description})" if rule.description else ""
        if raw is None and not rule.required:
            continue  # an optional variable without a value: parameters naming it are left out
        if raw is None:
            raise ConfigError(
                f"spec {spec.name!r} needs the connection value {name!r}{about}",
                code=ErrorCode.CONNECTION_INVALID,
            )
        value = matched_value(rule, raw) if isinstance(raw, str) else None
        if value is None:
            raise ConfigError(
                f"connection value {name!r} does not match its pattern {rule.pattern!r}{about}",
                code=ErrorCode.CONNECTION_INVALID,
            )
        values[name] = value
    return values


def kept_values(spec: FlowSpec, raw: Mapping[str, str], *, needed: bool) -> dict[str, str]:
    """The callback parameters the spec keeps, each checked against its pattern.

    ``needed`` (a callback that carries a code) makes a missing parameter without a
    default an error: the exchange could not be sent where it must go. A value
    that does not match is refused (``callback_invalid``), never trusted.
    """
    values: dict[str, str] = {}
    for name, rule in spec.callback.keep.items():
        param = rule.param or name
        value = raw.get(param)
        if value is None:
            if rule.default is not None:
                values[name] = rule.default
            elif needed:
                raise CallbackError(
                    f"the callback carries no {param!r} parameter", code=ErrorCode.CALLBACK_INVALID
                )
            continue
        matched = matched_value(rule, value)
        if matched is None:
            raise CallbackError(
                f"the callback's {param!r} parameter does not match its pattern {rule.pattern!r}",
                code=ErrorCode.CALLBACK_INVALID,
            )
        values[name] = matched
    return values
