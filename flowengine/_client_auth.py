"""Signed client authentication: ``client_secret_jwt`` and ``private_key_jwt`` (RFC 7523 §2.2, OIDC Core §9).

Instead of sending its secret, the client sends a short-lived JWT it signed: ``iss`` and
``sub`` are the client id, ``aud`` the token endpoint, ``jti`` fresh randomness (so a
captured assertion cannot be replayed), ``iat`` now and ``exp`` a minute later. The
result is the two form parameters to add to the token request. Signing is joserfc's;
nothing here encodes a JWT by hand. ``now`` is the caller's clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import attrs

from flowengine._errors import ConfigError
from flowengine._jwks import ALGORITHMS, rsa_modulus_bits
from flowengine._oidc_http import url_problem

if TYPE_CHECKING:
    from joserfc.jwk import DictKey, ECKey, RSAKey

__all__ = [
    "ASSERTION_TYPE",
    "HMAC_ALGORITHMS",
    "MAX_LIFETIME",
    "ClientKey",
    "client_secret_jwt",
    "load_client_key",
    "private_key_jwt",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The HMAC algorithms of ``client_secret_jwt`` and the shortest secret each accepts (bytes).
HMAC_ALGORITHMS: dict[str, int] = {"HS256": 32, "HS384": 48, "HS512": 64}
#: An assertion lives at most this long (seconds); the default is 60.
MAX_LIFETIME = 300
_MIN_RSA_BITS = 2048
_CURVE_ALGORITHM = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


@attrs.frozen(slots=True)
class ClientKey:
    """A client's private signing key, the algorithm it signs with, and its ``kid``."""

    key: RSAKey | ECKey = attrs.field(repr=False)
    alg: str
    kid: str


def _bad_key(why: str) -> ConfigError:
    return ConfigError(f"the client's private key {why}", code="client_key_invalid")


def load_client_key(
    material: str | bytes | Mapping[str, Any],
    *,
    alg: str | None = None,
    kid: str | None = None,
    password: str | bytes | None = None,
) -> ClientKey:
    """A ``ClientKey`` from a PEM private key or a private JWK (a mapping or its JSON text).

    ``alg`` defaults to the JWK's own, else RS256 for RSA and ES256/384/512 by curve;
    ``kid`` to the JWK's own, else the key's RFC 7638 thumbprint. Raises ``ConfigError``
    (``client_key_invalid``) for a public key, an RSA key under 2048 bits, or an ``alg``
    the key cannot sign.
    """
    jwk = _as_jwk(material)
    key = _import_private(jwk if jwk is not None else material, password)
    if not key.is_private:
        raise _bad_key("is a public key; private_key_jwt signs with the private half")
    crv = getattr(key, "curve_name", None)
    chosen = (
        alg
        or _str_member(jwk, "alg")
        or ("RS256" if key.key_type == "RSA" else _CURVE_ALGORITHM.get(crv or ""))
    )
    wanted = ALGORITHMS.get(chosen or "")
    if wanted is None or wanted.kty != key.key_type or (wanted.crv is not None and wanted.crv != crv):
        raise _bad_key(f"cannot sign {str(chosen)[:20]!r} (a {key.key_type} key)")
    assert chosen is not None
    return ClientKey(key, chosen, kid or _str_member(jwk, "kid") or key.thumbprint())


def _as_jwk(material: str | bytes | Mapping[str, Any]) -> dict[str, Any] | None:
    if isinstance(material, Mapping):
        return dict(material)
    text = material.decode("utf-8", "replace") if isinstance(material, bytes) else material
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad_key("is not valid JSON") from None
    if not isinstance(value, dict):
        raise _bad_key("is not a JWK object")
    return value


def _str_member(jwk: Mapping[str, Any] | None, name: str) -> str | None:
    value = jwk.get(name) if jwk is not None else None
    return value if isinstance(value, str) and value else None


def _import_private(material: object, password: str | bytes | None) -> RSAKey | ECKey:
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey, RSAKey

    if not isinstance(material, dict):
        return _import_pem(material, password)
    if "keys" in material:
        raise _bad_key("is a key set; give one key")
    kty = material.get("kty")
    if kty not in ("RSA", "EC"):
        raise _bad_key("is not an RSA or EC JWK")
    if kty == "RSA" and rsa_modulus_bits(material.get("n")) < _MIN_RSA_BITS:  # before joserfc warns
        raise _bad_key(f"is not an RSA key of {_MIN_RSA_BITS} bits or more")
    try:
        return (RSAKey if kty == "RSA" else ECKey).import_key(cast("DictKey", material))
    except (JoseError, ValueError, TypeError):
        raise _bad_key("is not a valid JWK") from None


def _import_pem(material: object, password: str | bytes | None) -> RSAKey | ECKey:
    """A PEM private key, read by cryptography first so its type and size are known before import."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
    from joserfc.jwk import ECKey, RSAKey

    data = material.encode("utf-8") if isinstance(material, str) else material
    if not isinstance(data, bytes):
        raise _bad_key("is neither PEM text nor a JWK")
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        loaded = load_pem_private_key(data, password=secret)
    except (ValueError, TypeError):
        try:
            load_pem_public_key(data)
        except (ValueError, TypeError):
            raise _bad_key("is not a PEM RSA or EC private key (or its password is wrong)") from None
        raise _bad_key("is a public key; private_key_jwt signs with the private half") from None
    if isinstance(loaded, rsa.RSAPrivateKey):
        if loaded.key_size < _MIN_RSA_BITS:
            raise _bad_key(f"is not an RSA key of {_MIN_RSA_BITS} bits or more")
        return RSAKey.import_key(loaded)
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(loaded)
    raise _bad_key("is not an RSA or EC key")


def _claims(client_id: str, audience: str, now: float, lifetime: int, jti: str) -> dict[str, Any]:
    if not client_id:
        raise ConfigError("a client assertion needs a client id", code="client_auth_invalid")
    problem = url_problem(audience)
    if problem is not None:
        raise ConfigError(
            f"the assertion's audience {audience[:200]!r} {problem}", code="client_auth_invalid"
        )
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not 1 <= lifetime <= MAX_LIFETIME:
        raise ConfigError(f"an assertion lives 1 to {MAX_LIFETIME} s", code="client_auth_invalid")
    issued = int(now)
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti,
        "iat": issued,
        "exp": issued + lifetime,
    }


def _form(assertion: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


def client_secret_jwt(
    *,
    client_id: str,
    client_secret: str,
    token_endpoint: str,
    now: float,
    lifetime: int = 60,
    alg: str = "HS256",
    audience: str | None = None,
    jti: str,
) -> dict[str, str]:
    """The form parameters authenticating ``client_id`` by an HMAC of its secret (``client_secret_jwt``).

    ``audience`` defaults to the token endpoint (Core §9). The secret must be at least as
    long as the hash (RFC 7518 §3.2: 32 bytes for HS256), else ``client_secret_too_short``.
    """
    from joserfc import jwt
    from joserfc.jwk import OctKey

    if alg not in HMAC_ALGORITHMS:
        raise ConfigError(
            f"client_secret_jwt signs with {', '.join(HMAC_ALGORITHMS)}", code="client_auth_invalid"
        )
    secret = (client_secret or "").encode("utf-8")
    if len(secret) < HMAC_ALGORITHMS[alg]:
        raise ConfigError(
            f"client_secret_jwt with {alg} needs a secret of {HMAC_ALGORITHMS[alg]} bytes or more",
            code="client_secret_too_short",
        )
    claims = _claims(client_id, audience or token_endpoint, now, lifetime, jti)
    return _form(jwt.encode({"alg": alg}, claims, OctKey.import_key(secret), algorithms=[alg]))


def private_key_jwt(
    *,
    client_id: str,
    key: ClientKey,
    token_endpoint: str,
    now: float,
    lifetime: int = 60,
    audience: str | None = None,
    jti: str,
) -> dict[str, str]:
    """The form parameters authenticating ``client_id`` by a private key (``private_key_jwt``).

    ``jti`` is the assertion's id: fresh for each assertion (RFC 7523), drawn by the caller,
    as the core takes every random value.
    """
    from joserfc import jwt

    claims = _claims(client_id, audience or token_endpoint, now, lifetime, jti)
    header = {"alg": key.alg, "kid": key.kid}
    return _form(jwt.encode(header, claims, key.key, algorithms=[key.alg]))
