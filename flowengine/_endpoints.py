"""A spec's endpoints as an engine uses them: re-pointed, filled per connection, judged.

Endpoints are templates (``https://{subdomain}.zendesk.com/oauth/tokens``). A
flow is bound to the URLs its connection values fill (SECURITY.md 4): the
callback and the exchange refuse an engine that would fill them otherwise. Each
filled URL is judged as the spec's own are, so no value can make another host
or scheme of it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from flowengine import _templates, _variables
from flowengine._errors import ConfigError, ErrorCode
from flowengine._spec import AuthorizationRequest, FlowSpec
from flowengine._spec_check import endpoint_problem

__all__ = ["Endpoints", "encode_query", "safe_variables", "with_params"]

#: What an ``unescaped`` parameter keeps as it is: characters some providers refuse to
#: see percent-encoded (``user:read``, ``a,b``), none of which ends a query parameter.
_KEPT_AS_IS = ":/,@!$'()*;"
#: Filled URLs an engine remembers, at most (per kind).
_MEMO_LIMIT = 1024
_K = TypeVar("_K")
_V = TypeVar("_V")


def safe_variables(template: str) -> tuple[str, ...]:
    """The variables a template names (none when it is malformed: validation reported that)."""
    try:
        return _templates.variables(template)
    except _templates.TemplateError:
        return ()


def encode_query(params: Mapping[str, str], unescaped: Iterable[str] = ()) -> str:
    """``params`` as a query string; the ``unescaped`` ones keep ``: / , @ ! $ ' ( ) * ;`` as they are.

    Every value still has ``& = # % ?`` and spaces escaped (a space as ``+``), so no
    value can add a parameter or end the query.
    """
    keep = unescaped if isinstance(unescaped, frozenset | set) else frozenset(unescaped)
    return "&".join(
        [
            f"{_quoted_name(name)}={_quoted(value, _KEPT_AS_IS if name in keep else '')}"
            for name, value in params.items()
        ]
    )


#: What ``quote_plus`` leaves as it is whatever ``safe`` says: most names and values are only this.
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


def _quoted(text: str, safe: str) -> str:
    """``quote_plus(text, safe=safe)``, without its work for text it would not change.

    ``quote_plus`` looks each byte up in Python; here one regex finds the bytes to escape
    (a URL has a few) and a table says what each becomes, with the same result: UTF-8,
    ``%XX`` in upper case for every byte but ``A-Za-z0-9_.~-`` and ``safe``, a space as ``+``.
    """
    if _PLAIN.fullmatch(text):
        return text
    return _unsafe(safe).sub(_escape, text.encode("utf-8")).decode("ascii")


#: What ``quote_plus`` makes of each byte it escapes.
_ESCAPES = [b"+" if byte == ord(" ") else b"%%%02X" % byte for byte in range(256)]


def _escape(found: re.Match[bytes]) -> bytes:
    return _ESCAPES[found[0][0]]


@functools.lru_cache(maxsize=16)
def _unsafe(safe: str) -> re.Pattern[bytes]:
    """The bytes ``quote_plus(..., safe=safe)`` escapes: all but ``A-Za-z0-9_.~-`` and ``safe``."""
    kept = b"_.~-" + safe.replace(" ", "").encode("ascii", "ignore")
    return re.compile(b"[^A-Za-z0-9" + re.escape(kept) + b"]")


@functools.lru_cache(maxsize=512)
def _quoted_name(name: str) -> str:
    """A parameter's name quoted: a spec's names are few, and every request sends the same ones."""
    return _quoted(name, "")


def with_params(endpoint: str, query: str, authorization: AuthorizationRequest) -> str:
    """The authorization URL: the parameters after ``?`` (or ``&``), in the fragment when the spec says."""
    if authorization.params_in == "fragment":
        base, _, fragment = endpoint.partition("#")
        return f"{base}#{fragment}{'&' if '?' in fragment else '?'}{query}"
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


class Endpoints:
    """The endpoint templates of one engine (the spec's, re-pointed), filled on demand."""

    def __init__(self, spec: FlowSpec, templates: Mapping[str, str], client_id: str) -> None:
        self.spec = spec
        self.templates = dict(templates)
        self.client_id = client_id
        self._variables = {name: frozenset(safe_variables(t)) for name, t in self.templates.items()}
        declared = set(spec.connection)
        self._tenant = [n for n, t in spec.endpoints.items() if declared & set(safe_variables(t))]
        self._keys = {
            n: tuple(v for v in safe_variables(t) if v != "client_id") for n, t in templates.items()
        }
        #: URLs filled and judged good, by endpoint name and the values filling it: the same
        #: values fill the same URL, which gets the same verdict, so each is made once per
        #: engine (bounded: past the limit, tenants' URLs are forgotten and made again).
        self._good: dict[tuple[str | None, ...], str] = {}
        self._filled: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self._bound: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def filled(self, connection: Mapping[str, str]) -> dict[str, str]:
        """Every endpoint the connection values fill completely, filled (not judged)."""
        key = tuple(sorted(connection.items()))
        found = self._filled.get(key)
        if found is None:
            found = _variables.endpoints_for(self.templates, {**connection, "client_id": self.client_id})
            _remember(self._filled, key, found)
        return dict(found)

    def tenant_endpoints(self) -> list[str]:
        """The endpoints whose spec URL a connection value is part of: where tenants differ."""
        return list(self._tenant)

    def for_flow(self, connection: Mapping[str, str]) -> dict[str, str]:
        """The tenant's endpoints as the connection values fill them, judged: what a flow is bound to.

        Only endpoints that differ between tenants bind a flow; the others may be
        re-pointed (a token endpoint that was down, then fixed) without orphaning it.
        Every endpoint the values fill is judged, bound or not.
        """
        key = tuple(sorted(connection.items()))
        found = self._bound.get(key)
        if found is None:
            known = {*connection, "client_id"}
            names = [n for n, wanted in self._variables.items() if wanted <= known]
            judged = {name: self.url(name, connection) for name in names}
            found = {name: judged[name] for name in self._tenant if name in judged}
            _remember(self._bound, key, found)
        return dict(found)

    def bound_elsewhere(self, connection: Mapping[str, str], bound: Mapping[str, str]) -> bool:
        """True when this engine fills a flow's tenant endpoints otherwise than the flow recorded."""
        if not bound:
            return False  # a flow bound to no tenant endpoint (a spec without tenants)
        filled = self.filled(connection)
        return any(filled.get(name) != url for name, url in bound.items())

    def url(self, name: str, values: Mapping[str, str | None]) -> str:
        """The endpoint ``name`` filled from ``values`` and judged (``connection_invalid``)."""
        key = (name, *[values.get(variable) for variable in self._keys[name]])
        known = self._good.get(key)
        if known is not None:
            return known
        template = self.templates[name]
        url = _variables.fill_endpoint(template, {**values, "client_id": self.client_id})
        if url is None:
            wanted = ", ".join(safe_variables(template))
            raise ConfigError(
                f"endpoint {name!r} needs URL-safe values for {wanted} (no . or .. path segment)",
                code=ErrorCode.CONNECTION_INVALID,
            )
        authorization = self.spec.authorization
        in_fragment = (
            authorization is not None
            and authorization.endpoint == name
            and authorization.params_in == "fragment"
        )
        reason = _variables.url_problem(
            url, lambda u: endpoint_problem(u, local_ok=True, fragment_ok=in_fragment)
        )
        if reason is not None:
            raise ConfigError(f"endpoint {name!r}: {reason}", code=ErrorCode.CONNECTION_INVALID)
        _remember(self._good, key, url)
        return url


def _remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    """Keep ``value`` under ``key``, forgetting everything first when ``memo`` is full."""
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
