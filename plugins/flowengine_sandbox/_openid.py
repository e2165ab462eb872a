"""OpenID Connect for an emulated spec: ID tokens the sandbox signs, its key set, and userinfo.

A spec with ``openid:`` gets, in each token answer of a flow (a code exchange, a device
poll), an ``id_token`` signed with the sandbox's own RS256 key: ``iss`` is the spec's
issuer filled with the tenant's connection values (a variable under
``openid.issuer_claims`` from the claim of the same value: Microsoft's ``tid``), ``aud``
the client, ``sub`` the sandbox's user, the flow's ``nonce`` and the ``at_hash`` of the
access token. The spec's ``jwks`` endpoint serves the key that verifies them, and its
userinfo endpoint answers about the token's user.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from flowengine import FlowSpec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowengine_sandbox._web import NO_STORE, settings_of, state_of

__all__ = ["id_token_for", "is_key_set", "is_userinfo", "key_set", "userinfo"]

_lock = threading.Lock()
#: A template's parts: a literal brace written twice, or a variable.
_PART = re.compile(r"\{\{|\}\}|\{(\w+)\}")


def _key(request: Request) -> Any:
    """The sandbox's signing key: made once per app, when an OpenID spec first needs it."""
    from joserfc.jwk import RSAKey

    with _lock:
        key = getattr(request.app.state, "sandbox_openid_key", None)
        if key is None:
            key = RSAKey.generate_key(
                2048, {"use": "sig", "alg": "RS256", "kid": f"sandbox-{secrets.token_hex(4)}"}
            )
            request.app.state.sandbox_openid_key = key
    return key


def is_key_set(spec: FlowSpec, endpoint: str) -> bool:
    """True when ``endpoint`` is where the spec reads the issuer's keys."""
    return spec.openid is not None and endpoint == spec.openid.jwks


def is_userinfo(spec: FlowSpec, endpoint: str) -> bool:
    """True when ``endpoint`` is the spec's OpenID userinfo endpoint."""
    return spec.openid is not None and endpoint == spec.openid.userinfo


def key_set(request: Request) -> JSONResponse:
    """The JWK Set holding the public half of the sandbox's signing key."""
    return JSONResponse({"keys": [_key(request).as_dict(private=False)]})


def _issuer(spec: FlowSpec, audience: str) -> tuple[str, dict[str, str]]:
    """The spec's issuer for the tenant ``audience`` names, and the claims that name its variables."""
    tenant = dict(parse_qsl(audience.partition("?")[2]))
    claims: dict[str, str] = {}
    assert spec.openid is not None
    assert spec.issuer is not None
    for variable, claim in spec.openid.issuer_claims.items():
        claims[claim] = tenant.get(variable) or "sandbox"
        tenant[variable] = claims[claim]

    def fill(match: re.Match[str]) -> str:
        return tenant.get(match[1], "sandbox") if match[1] else match[0][0]

    return _PART.sub(fill, spec.issuer), claims


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def id_token_for(
    request: Request,
    spec: FlowSpec,
    *,
    audience: str,
    client_id: str,
    access_token: str,
    nonce: str | None,
) -> str:
    """A signed ID token for the sandbox's user, as the spec's provider would issue it."""
    from joserfc import jwt

    settings = settings_of(request)
    now = int(settings.clock())
    issuer, claims = _issuer(spec, audience)
    payload: dict[str, Any] = {
        **claims,
        "iss": issuer,
        "sub": str(settings.user.id),
        "aud": client_id,
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "at_hash": _at_hash(access_token),
        "email": settings.user.email,
    }
    if nonce:
        payload["nonce"] = nonce
    key = _key(request)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key, algorithms=["RS256"])


def userinfo(request: Request, authorization: Mapping[str, str]) -> Response:
    """The userinfo answer (OpenID Connect Core §5.3) for the Bearer token the request carries."""
    scheme, _, token = authorization.get("authorization", "").partition(" ")
    info = state_of(request).access_token(token) if scheme.lower() == "bearer" and token else None
    settings = settings_of(request)
    if info is None or settings.clock() >= info.expires_at:
        headers = {**NO_STORE, "WWW-Authenticate": 'Bearer error="invalid_token"'}
        return JSONResponse({"error": "invalid_token"}, status_code=401, headers=headers)
    body = {"sub": str(info.grant.ref_id), "email": settings.user.email, "email_verified": True}
    return JSONResponse(body, headers=NO_STORE)
