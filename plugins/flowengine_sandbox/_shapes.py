"""A provider's protocol read back from its spec: the inverse of what the engine does with it.

The engine fills a spec's templates and reads answers by its token rules; the
emulator does the opposite. It finds which request parameter carries the
client id, the code or the refresh token (the one whose template is ``{code}``),
tells one grant from another by their literal parameters (``grant_type:
refresh_token``), and shapes a token answer as the spec reads it: fields at
their dotted paths, the token type left out when the spec defaults it, expiry in
milliseconds or as an absolute time, account fields where the spec looks for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flowengine import FlowSpec

__all__ = [
    "grant_of",
    "kept_values",
    "literal_params",
    "param_for",
    "tenant_of",
    "token_answer",
    "variables_sent",
]

_VARIABLE = re.compile(r"^\{(\w+)\}$")
#: Values a kept callback parameter without an example may take, tried in order against its pattern.
_CANDIDATES = ("4620816365037572746", "sandbox", "us", "1", "a")


def param_for(params: Mapping[str, str], variable: str) -> str | None:
    """The name of the parameter whose template is exactly ``{variable}``, or None."""
    return next((name for name, template in params.items() if template == f"{{{variable}}}"), None)


def variables_sent(params: Mapping[str, str]) -> dict[str, str]:
    """Parameter name by the variable it carries, for parameters that are one variable."""
    found = {}
    for name, template in params.items():
        match = _VARIABLE.match(template)
        if match:
            found[match[1]] = name
    return found


def literal_params(params: Mapping[str, str]) -> dict[str, str]:
    """The parameters whose value is fixed (``grant_type: authorization_code``)."""
    return {name: template for name, template in params.items() if "{" not in template.replace("{{", "")}


def grant_of(spec: FlowSpec, endpoint: str, fields: Mapping[str, str]) -> str | None:
    """The grant a request to ``endpoint`` with ``fields`` is: its literals match, its secret is there.

    Grants with more literal parameters are tried first, so that ``grant_type:
    refresh_token`` is told from a code exchange that sends no grant type at all.
    """
    candidates = sorted(
        (name for name, rule in spec.grants.items() if rule.endpoint == endpoint),
        key=lambda name: -len(literal_params(spec.grants[name].params)),
    )
    for name in candidates:
        rule = spec.grants[name]
        if any(fields.get(k) != v for k, v in literal_params(rule.params).items()):
            continue
        sent = variables_sent(rule.params)
        needs = [sent[v] for v in ("code", "refresh_token") if v in sent]
        if all(fields.get(field) for field in needs):
            return name
    return None


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    inner = body
    for part in parents:
        inner = inner.setdefault(part, {})
    inner[last] = value


def token_answer(
    spec: FlowSpec,
    *,
    access_token: str,
    refresh_token: str | None,
    expires_in: int,
    scope: str,
    user_id: int,
    now: float,
) -> dict[str, Any]:
    """A token answer in the shape the spec reads (the inverse of its ``token:`` rules)."""
    rules = spec.token
    body: dict[str, Any] = {}
    _put(body, rules.access_token, access_token)
    if rules.default_token_type is None:
        _put(body, rules.token_type, rules.token_types[0])
    if rules.expires_at is not None:
        _put(body, rules.expires_at, int(now) + expires_in)
    else:
        _put(
            body,
            rules.expires_in,
            expires_in * 1000 if rules.expires_in_unit == "milliseconds" else expires_in,
        )
    if refresh_token is not None:
        _put(body, rules.refresh_token, refresh_token)
    if scope:
        _put(body, rules.scope, scope)
    if rules.account is not None:
        _put(body, rules.account.id, str(user_id))
        if rules.account.type is not None:
            _put(body, rules.account.type, "user")
    return body


def kept_values(spec: FlowSpec) -> dict[str, str]:
    """The callback parameters the spec keeps, each with a value its pattern accepts."""
    values = {}
    for name, rule in spec.callback.keep.items():
        choices = [c for c in (rule.example, rule.default, *_CANDIDATES) if c is not None]
        values[rule.param or name] = next(
            (c for c in choices if re.fullmatch(rule.pattern, c)), choices[0] if choices else "sandbox"
        )
    return values


def tenant_of(spec: FlowSpec, endpoint: str, rest: str) -> str:
    """Which tenant a request is for: the connection values its address fills, as one string.

    ``rest`` is the emulated address after ``/_e/SPEC/ENDPOINT/`` (the endpoint's own
    host and path); each variable of the endpoint's template matches one path segment
    or host label. Kept callback values do not name a tenant: they come later.
    """
    template = spec.endpoints[endpoint].split("://", 1)[-1].split("#", 1)[0].split("?", 1)[0]
    pattern = ""
    for literal, name in re.findall(r"([^{}]*)(?:\{(\w+)\})?", template):
        pattern += re.escape(literal.replace("{{", "{").replace("}}", "}"))
        if name:
            pattern += f"(?P<{name}>[^/]+)" if name not in _seen(pattern) else f"(?P={name})"
    match = re.match(pattern, rest)
    if match is None:
        return ""
    return "&".join(f"{k}={v}" for k, v in sorted(match.groupdict().items()) if k in spec.connection)


def _seen(pattern: str) -> set[str]:
    return set(re.findall(r"\(\?P<(\w+)>", pattern))
