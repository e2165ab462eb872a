"""Provider discovery (OpenID Connect Discovery 1.0, RFC 8414), sans-I/O, with an HTTP cache.

``discovery_request`` builds the GET for an issuer's metadata; ``read_discovery`` turns the
answer into a ``ProviderMetadata`` or a typed error. The document is trusted only when its
``issuer`` is exactly the one asked for (Discovery §4.3, RFC 8414 §3.3: otherwise a
provider could speak for another) and every endpoint in it passes the URL judge.
``DiscoveryCache`` keeps one document per issuer for as long as its caching headers allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import attrs

from flowengine._errors import ConfigError
from flowengine._http import HttpRequest, HttpResponse
from flowengine._oidc_errors import DiscoveryError
from flowengine._oidc_http import (
    CachePolicy,
    freeze_json,
    fresh_until,
    get_json_request,
    read_json_object,
    url_problem,
)

__all__ = [
    "CachedMetadata",
    "DiscoveryCache",
    "DiscoveryForm",
    "ProviderMetadata",
    "check_issuer",
    "discovery_request",
    "discovery_url",
    "read_discovery",
]

#: ``openid``: ``{issuer}/.well-known/openid-configuration`` (Discovery §4.1);
#: ``oauth``: ``{origin}/.well-known/oauth-authorization-server{path}`` (RFC 8414 §3.1).
DiscoveryForm = Literal["openid", "oauth"]

_URL_FIELDS = (
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "userinfo_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "end_session_endpoint",
    "device_authorization_endpoint",
    "registration_endpoint",
    "pushed_authorization_request_endpoint",
)
#: Lists with the default RFC 8414 §2 / Discovery §3 give them when absent.
_LIST_FIELDS: dict[str, tuple[str, ...]] = {
    "scopes_supported": (),
    "response_types_supported": (),
    "response_modes_supported": ("query", "fragment"),
    "grant_types_supported": ("authorization_code", "implicit"),
    "subject_types_supported": (),
    "token_endpoint_auth_methods_supported": ("client_secret_basic",),
    "token_endpoint_auth_signing_alg_values_supported": (),
    "id_token_signing_alg_values_supported": (),
    "userinfo_signing_alg_values_supported": (),
    "code_challenge_methods_supported": (),
    "claims_supported": (),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "openid": ("authorization_endpoint", "jwks_uri", "response_types_supported"),
    "oauth": ("response_types_supported",),
}


def check_issuer(issuer: str) -> str:
    """``issuer`` when it may name an issuer (https, http only on loopback; no query, fragment, dot segment).

    Raises ``ConfigError`` (``issuer_invalid``): this is what the caller or the spec gave.
    """
    problem = url_problem(issuer)
    if problem is None and (urlsplit(issuer).query or "?" in issuer):
        problem = "must not carry a query"
    if problem is None and any(
        segment.lower().replace("%2e", ".") in (".", "..") for segment in urlsplit(issuer).path.split("/")
    ):
        problem = "must not have a . or .. path segment"
    if problem is not None:
        raise ConfigError(f"issuer {issuer[:200]!r} {problem}", code="issuer_invalid")
    return issuer


def discovery_url(issuer: str, form: DiscoveryForm = "openid") -> str:
    """Where ``issuer`` publishes its metadata, in the OpenID or the RFC 8414 form."""
    check_issuer(issuer)
    if form == "openid":
        return issuer.rstrip("/") + "/.well-known/openid-configuration"
    parts = urlsplit(issuer)
    path = "/.well-known/oauth-authorization-server" + parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def discovery_request(
    issuer: str, form: DiscoveryForm = "openid", user_agent: str = "flowengine"
) -> HttpRequest:
    """The GET for ``issuer``'s discovery document (no credentials)."""
    return get_json_request(discovery_url(issuer, form), user_agent)


@attrs.frozen(slots=True)
class ProviderMetadata:
    """What an issuer says about itself, checked; ``document`` keeps every field it sent."""

    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    jwks_uri: str | None = None
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    introspection_endpoint: str | None = None
    end_session_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    registration_endpoint: str | None = None
    pushed_authorization_request_endpoint: str | None = None
    scopes_supported: tuple[str, ...] = ()
    response_types_supported: tuple[str, ...] = ()
    response_modes_supported: tuple[str, ...] = ("query", "fragment")
    grant_types_supported: tuple[str, ...] = ("authorization_code", "implicit")
    subject_types_supported: tuple[str, ...] = ()
    token_endpoint_auth_methods_supported: tuple[str, ...] = ("client_secret_basic",)
    token_endpoint_auth_signing_alg_values_supported: tuple[str, ...] = ()
    id_token_signing_alg_values_supported: tuple[str, ...] = ()
    userinfo_signing_alg_values_supported: tuple[str, ...] = ()
    code_challenge_methods_supported: tuple[str, ...] = ()
    claims_supported: tuple[str, ...] = ()
    #: RFC 9207: the provider puts ``iss`` on its authorization responses.
    authorization_response_iss_parameter_supported: bool = False
    document: Mapping[str, Any] = attrs.field(factory=lambda: MappingProxyType({}), repr=False, eq=False)


def read_discovery(
    response: HttpResponse, *, issuer: str, form: DiscoveryForm = "openid"
) -> ProviderMetadata:
    """The checked metadata in ``response`` to ``discovery_request(issuer, form)``.

    Raises ``DiscoveryError``: ``discovery_unavailable`` (429/5xx, retryable),
    ``discovery_invalid``, ``discovery_issuer_mismatch``, ``discovery_insecure_url``.
    """
    check_issuer(issuer)
    _check_status(response)
    document = read_json_object(response, what="the discovery document", fail=_invalid)
    if document.get("issuer") != issuer:
        raise DiscoveryError(
            "the discovery document names another issuer than the one asked for",
            code="discovery_issuer_mismatch",
        )
    missing = [name for name in _REQUIRED[form] if document.get(name) in (None, [], "")]
    if missing:
        raise _invalid(f"the discovery document lacks {', '.join(missing)}")
    fields: dict[str, Any] = {name: _url_field(document, name) for name in _URL_FIELDS}
    for name, default in _LIST_FIELDS.items():
        fields[name] = _list_field(document, name, default)
    frozen = freeze_json(document)
    if frozen is None:
        raise _invalid("the discovery document nests too deep")
    iss_parameter = document.get("authorization_response_iss_parameter_supported", False)
    if not isinstance(iss_parameter, bool):
        raise _invalid("authorization_response_iss_parameter_supported is not a boolean")
    return ProviderMetadata(
        issuer=issuer,
        authorization_response_iss_parameter_supported=iss_parameter,
        document=frozen,
        **fields,
    )


def _invalid(message: str) -> DiscoveryError:
    return DiscoveryError(message, code="discovery_invalid")


def _check_status(response: HttpResponse) -> None:
    if response.status == 200:
        return
    if response.status == 429 or response.status >= 500:
        raise DiscoveryError(
            f"the discovery endpoint answered {response.status}",
            code="discovery_unavailable",
            retryable=True,
            status=response.status,
        )
    raise DiscoveryError(
        f"the discovery endpoint answered {response.status}", code="discovery_invalid", status=response.status
    )


def _url_field(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} is not a string")
    problem = url_problem(value)
    if problem is not None:
        raise DiscoveryError(f"{name} {value[:200]!r} {problem}", code="discovery_insecure_url")
    return value


def _list_field(document: Mapping[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = document.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(f"{name} is not a list of strings")
    return tuple(value)


@attrs.frozen(slots=True)
class CachedMetadata:
    """A document and until when it may be used without asking the issuer again."""

    metadata: ProviderMetadata
    fetched_at: float
    fresh_until: float

    def is_fresh(self, now: float) -> bool:
        """True while the caching headers (bounded by the policy) allow reuse."""
        return now < self.fresh_until


@attrs.define
class DiscoveryCache:
    """Discovery documents by issuer, each fresh for as long as its HTTP headers say.

    Bounded: past ``max_issuers`` the oldest entry goes (a generic spec takes the issuer
    from the person running it, so the set of issuers is not ours to bound).
    """

    policy: CachePolicy = attrs.field(factory=CachePolicy)
    max_issuers: int = 256
    _entries: dict[str, CachedMetadata] = attrs.field(factory=dict, init=False)

    def get(self, issuer: str, now: float, *, allow_stale: bool = False) -> ProviderMetadata | None:
        """The issuer's metadata if fresh at ``now`` (or at all, with ``allow_stale``), else None."""
        entry = self._entries.get(issuer)
        if entry is None or not (allow_stale or entry.is_fresh(now)):
            return None
        return entry.metadata

    def entry(self, issuer: str) -> CachedMetadata | None:
        """What is kept for ``issuer``, fresh or not: says until when it is fresh."""
        return self._entries.get(issuer)

    def store(self, metadata: ProviderMetadata, response: HttpResponse, now: float) -> CachedMetadata:
        """Keep ``metadata`` (read from ``response`` at ``now``) for as long as its headers allow."""
        entry = CachedMetadata(metadata, now, fresh_until(response, now, self.policy))
        self._entries.pop(metadata.issuer, None)
        self._entries[metadata.issuer] = entry
        while len(self._entries) > self.max_issuers:
            del self._entries[next(iter(self._entries))]
        return entry

    def accept(
        self, response: HttpResponse, *, issuer: str, now: float, form: DiscoveryForm = "openid"
    ) -> ProviderMetadata:
        """``read_discovery`` then ``store``: a refused document leaves the old entry in place."""
        metadata = read_discovery(response, issuer=issuer, form=form)
        self.store(metadata, response, now)
        return metadata

    def discard(self, issuer: str) -> None:
        """Forget ``issuer``'s document (the next use fetches it again)."""
        self._entries.pop(issuer, None)
