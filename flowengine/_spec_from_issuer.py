"""``flowengine spec from-issuer URL``: a starting spec written from an issuer's discovery document.

The document is fetched through the transport hook and checked as the engine checks it
(``_discovery``: its ``issuer`` must be the URL asked for, every endpoint https, http
only on loopback). What it says becomes the spec's words: its endpoints, PKCE when it
offers S256, the client authentication it supports (HTTP Basic first), RFC 9207's
``iss`` on the callback, the ID token algorithms, userinfo, revocation and the device
grant. The text is loaded back with ``load_spec`` before it is returned: what this
writes always validates.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from flowengine._discovery import ProviderMetadata, discovery_request, unreachable
from flowengine._errors import TransportError
from flowengine._http import TransportConfig
from flowengine._jwks import ALGORITHMS
from flowengine._plugins import open_transport
from flowengine._security import is_loopback
from flowengine._spec_load import load_spec

__all__ = ["fetch_metadata", "spec_from_issuer", "spec_text"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: token_endpoint_auth_methods_supported -> the spec's client_auth, in order of preference.
_CLIENT_AUTH = {
    "client_secret_basic": "basic",
    "client_secret_post": "body",
    "private_key_jwt": "private_key_jwt",
    "client_secret_jwt": "client_secret_jwt",
}


async def fetch_metadata(issuer: str, config: TransportConfig | None = None) -> ProviderMetadata:
    """The issuer's checked OpenID Connect metadata, fetched once through the transport hook."""
    from flowengine._discovery import read_discovery

    transport = open_transport(config or TransportConfig())
    try:
        response = await transport.send(discovery_request(issuer))
    except TransportError as exc:
        raise unreachable(issuer, exc) from None
    finally:
        await transport.aclose()
    return read_discovery(response, issuer=issuer)


async def spec_from_issuer(issuer: str, *, name: str | None = None) -> str:
    """A spec (YAML text) for ``issuer``, from its discovery document; it validates."""
    return spec_text(await fetch_metadata(issuer), name=name)


def _name(issuer: str) -> str:
    host = urlsplit(issuer).hostname or "oidc"
    return re.sub(r"[^a-z0-9.-]+", "-", host.lower()).strip("-.") or "oidc"


def _auth(metadata: ProviderMetadata) -> tuple[str, dict[str, str]]:
    """The client authentication to use and the client parameters it puts in the body."""
    offered = metadata.token_endpoint_auth_methods_supported
    method = next((m for m in _CLIENT_AUTH if m in offered), "client_secret_basic")
    auth = _CLIENT_AUTH[method]
    if auth == "body":
        return auth, {"client_id": "{client_id}", "client_secret": "{client_secret}"}
    return auth, {"client_id": "{client_id}"} if auth != "basic" else {}


def _document(metadata: ProviderMetadata, name: str) -> dict[str, Any]:
    fields = {
        "authorize": metadata.authorization_endpoint,
        "token": metadata.token_endpoint,
        "userinfo": metadata.userinfo_endpoint,
        "revoke": metadata.revocation_endpoint,
        "jwks": metadata.jwks_uri,
        "device": metadata.device_authorization_endpoint,
    }
    endpoints = {k: v.replace("{", "{{").replace("}", "}}") for k, v in fields.items() if v}
    pkce = "S256" in metadata.code_challenge_methods_supported
    auth, client = _auth(metadata)
    scopes = ["openid", *(s for s in ("profile", "email") if s in metadata.scopes_supported)]
    params = {
        "response_type": "code",
        "client_id": "{client_id}",
        "redirect_uri": "{redirect_uri}",
        "scope": "{scope}",
        "state": "{state}",
        "nonce": "{nonce}",
    }
    if pkce:
        params |= {"code_challenge": "{code_challenge}", "code_challenge_method": "{code_challenge_method}"}
    code = {"grant_type": "authorization_code", "code": "{code}", "redirect_uri": "{redirect_uri}"}
    code |= {"code_verifier": "{code_verifier}"} if pkce else {}
    grants: dict[str, Any] = {"authorization_code": {"client_auth": auth, "params": {**client, **code}}}
    if "refresh_token" in metadata.grant_types_supported:
        refresh = {"grant_type": "refresh_token", "refresh_token": "{refresh_token}"}
        grants["refresh_token"] = {"client_auth": auth, "params": {**client, **refresh}}
    document: dict[str, Any] = {
        "name": name,
        "description": f"OpenID Connect at {metadata.issuer} (written from its discovery document).",
        "issuer": metadata.issuer,
    }
    if any(urlsplit(url).scheme == "http" for url in endpoints.values()):
        document["local_only"] = True  # http:// endpoints: a provider on loopback
    document |= {"endpoints": endpoints, "pkce": pkce}
    document["authorization"] = {"default_scopes": scopes, "params": params}
    if metadata.authorization_response_iss_parameter_supported:
        document["callback"] = {"iss": "iss", "iss_required": True}
    if "device" in endpoints and DEVICE_GRANT in metadata.grant_types_supported:
        poll = {"grant_type": DEVICE_GRANT, "device_code": "{device_code}"}
        grants["device_code"] = {"client_auth": auth, "params": {**client, **poll}}
        document["device"] = {"client_auth": auth, "params": {**client, "scope": "{scope}"}}
    document["grants"] = grants
    if "revoke" in endpoints:
        revoke = {"token": "{token}", "token_type_hint": "{token_type_hint}"}
        document["revocation"] = {"endpoint": "revoke", "client_auth": auth, "params": {**client, **revoke}}
    openid: dict[str, Any] = {}
    algorithms = [a for a in metadata.id_token_signing_alg_values_supported if a in ALGORITHMS]
    if algorithms:
        openid["algorithms"] = algorithms
    if "userinfo" in endpoints:
        openid["userinfo"] = "userinfo"
    document["openid"] = openid
    document["token"] = {"token_types": ["bearer"]}
    return document


def spec_text(metadata: ProviderMetadata, *, name: str | None = None) -> str:
    """The spec for ``metadata`` as YAML, with a header saying where it came from; validated."""
    document = _document(metadata, name or _name(metadata.issuer))
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=False, width=100)
    loopback = is_loopback(urlsplit(metadata.issuer).hostname or "")
    header = (
        f"# Written by `flowengine spec from-issuer {metadata.issuer}` from its discovery document.\n"
        "# A starting point: check the scopes, the client authentication and the device section\n"
        "# against the provider's documentation (docs/spec.md, docs/oidc.md). `discovery: openid`\n"
        "# instead of `endpoints:` would fetch them at run time.\n"
        + ("# The issuer is on loopback: http:// is allowed there only (local_only).\n" if loopback else "")
    )
    text = header + body
    load_spec(text)  # what this writes validates, or this is a bug
    return text
