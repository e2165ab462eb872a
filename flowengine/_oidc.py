"""ID token validation, as OpenID Connect Core 1.0 §3.1.3.7 lists it, sans-I/O.

A flow keeps only the SHA-256 of its ``nonce`` (like ``state``); the token's nonce is
hashed and compared in constant time. Validation runs in two steps so that the key
lookup (``JwksCache.resolve``, which may ask for a fetch) sits between them:

    parsed = read_id_token(raw, rules)                  # header: alg allowed, not none/HMAC
    keys = ...cache.resolve(issuer, jwks_uri, parsed.header, now)...
    id_token = verify_id_token(parsed, keys, rules, now=now, access_token=at)

``validate_id_token`` does both when the caller already holds the key set. Each refusal
is an ``IdTokenError`` with its own code (``OIDC_CODES``). The claims come back read-only;
the account is ``sub`` within ``iss``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from flowengine._errors import ConfigError
from flowengine._jwks import ALGORITHMS, JwsHeader, SigningKey
from flowengine._oidc_errors import IdTokenError
from flowengine._oidc_errors import refuse_id_token as _refuse
from flowengine._oidc_jws import DEFAULT_ALGORITHMS, ParsedJws, check_algorithms, parse_jws, verify_jws
from flowengine._records import AccountRef
from flowengine._security import digest, digests_equal

__all__ = [
    "MAX_LEEWAY",
    "IdToken",
    "IdTokenRules",
    "left_half_hash",
    "nonce_hash",
    "read_id_token",
    "validate_id_token",
    "verify_id_token",
]

#: The clock skew a spec may allow, at most (seconds).
MAX_LEEWAY = 300.0
_MAX_SUB = 255
_REQUIRED = ("iss", "sub", "aud", "exp", "iat")


def nonce_hash(nonce: str) -> str:
    """What a flow keeps of its nonce: the same SHA-256 hex digest as for ``state``."""
    return digest(nonce)


def _algorithms(value: Iterable[str]) -> tuple[str, ...]:
    return check_algorithms(value)


def _audiences(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _check_leeway(_: object, __: object, value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value <= MAX_LEEWAY):
        raise ConfigError(f"leeway must be between 0 and {MAX_LEEWAY:g} s", code="id_token_rules_invalid")


def _check_max_age(_: object, __: object, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(
            "max_age must be a whole number of seconds, 0 or more", code="id_token_rules_invalid"
        )


@attrs.frozen(slots=True)
class IdTokenRules:
    """What an ID token must satisfy for one flow.

    ``nonce_hash`` is the flow's (None when the request carried no nonce: then a nonce in
    the token is not checked). ``max_age`` is the one the authentication request sent.
    ``trusted_audiences`` are the other audiences the client accepts beside itself
    (Core: a token listing an audience the client does not trust is refused).
    """

    issuer: str
    client_id: str
    nonce_hash: str | None = None
    algorithms: tuple[str, ...] = attrs.field(default=DEFAULT_ALGORITHMS, converter=_algorithms)
    leeway: float = attrs.field(default=60.0, validator=_check_leeway)
    max_age: int | None = attrs.field(default=None, validator=_check_max_age)
    trusted_audiences: frozenset[str] = attrs.field(default=frozenset(), converter=_audiences)


@attrs.frozen(slots=True)
class IdToken:
    """A validated ID token: its read-only claims, its header, and the token itself (never shown)."""

    claims: Mapping[str, Any] = attrs.field(repr=False)
    header: JwsHeader
    raw: str = attrs.field(repr=False)

    @property
    def issuer(self) -> str:
        """``iss``: who vouches for the person."""
        return str(self.claims["iss"])

    @property
    def subject(self) -> str:
        """``sub``: the person, stable and unique within the issuer."""
        return str(self.claims["sub"])

    @property
    def audience(self) -> tuple[str, ...]:
        """``aud`` as a tuple (a single string becomes one item)."""
        aud = self.claims["aud"]
        return (aud,) if isinstance(aud, str) else tuple(aud)

    @property
    def expires_at(self) -> float:
        """``exp``, seconds since the epoch."""
        return float(self.claims["exp"])

    @property
    def issued_at(self) -> float:
        """``iat``, seconds since the epoch."""
        return float(self.claims["iat"])

    @property
    def auth_time(self) -> float | None:
        """``auth_time``, when the person last authenticated, if the token says."""
        value = self.claims.get("auth_time")
        return None if value is None else float(value)

    @property
    def account(self) -> AccountRef:
        """Whom the token is about: ``sub``, named within its issuer (SECURITY.md 32)."""
        return AccountRef(type=self.issuer, id=self.subject)


def read_id_token(raw: object, rules: IdTokenRules) -> ParsedJws:
    """Step 1: the header of ``raw``, refused before any key is looked up when it cannot be allowed."""
    return parse_jws(raw, rules.algorithms, _refuse)


def verify_id_token(
    parsed: ParsedJws,
    keys: Sequence[SigningKey],
    rules: IdTokenRules,
    *,
    now: float,
    access_token: str | None = None,
) -> IdToken:
    """Step 2: the signature against ``keys``, then every claim check of Core §3.1.3.7.

    ``access_token`` (the one issued with the ID token) is checked against ``at_hash``
    when the token carries one.
    """
    claims = verify_jws(parsed, keys, _refuse)
    _check_shape(claims)
    _check_issuer_and_audience(claims, rules)
    _check_times(claims, rules, now)
    _check_nonce(claims, rules)
    if access_token is not None and "at_hash" in claims:
        _check_at_hash(claims["at_hash"], access_token, parsed.header.alg)
    return IdToken(claims, parsed.header, parsed.raw)


def validate_id_token(
    raw: object,
    keys: Sequence[SigningKey],
    rules: IdTokenRules,
    *,
    now: float,
    access_token: str | None = None,
) -> IdToken:
    """Both steps with a key set already held (the fitting keys are chosen from ``keys``)."""
    return verify_id_token(read_id_token(raw, rules), keys, rules, now=now, access_token=access_token)


def _is_time(value: object) -> bool:
    """A NumericDate: a finite, non-negative JSON number (not a boolean, not a string)."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )


def _check_shape(claims: Mapping[str, Any]) -> None:
    missing = [name for name in _REQUIRED if name not in claims]
    if missing:
        raise IdTokenError(f"the ID token lacks {', '.join(missing)}", code="id_token_claim_missing")
    sub, aud = claims["sub"], claims["aud"]
    if (
        not isinstance(sub, str)
        or not sub
        or len(sub) > _MAX_SUB
        or not (sub.isascii() and sub.isprintable())
    ):
        raise IdTokenError(
            f"sub is not a string of 1 to {_MAX_SUB} ASCII characters", code="id_token_claim_invalid"
        )
    audiences = (aud,) if isinstance(aud, str) else aud
    if not isinstance(audiences, tuple) or not audiences or not all(isinstance(a, str) for a in audiences):
        raise IdTokenError(
            "aud is not a string or a non-empty list of strings", code="id_token_claim_invalid"
        )
    for name in ("exp", "iat", "nbf", "auth_time"):
        if name in claims and not _is_time(claims[name]):
            raise IdTokenError(f"{name} is not a number of seconds", code="id_token_claim_invalid")
    for name in ("iss", "azp", "nonce", "at_hash"):
        if name in claims and not isinstance(claims[name], str):
            raise IdTokenError(f"{name} is not a string", code="id_token_claim_invalid")


def _check_issuer_and_audience(claims: Mapping[str, Any], rules: IdTokenRules) -> None:
    if claims["iss"] != rules.issuer:
        raise IdTokenError("iss is not the issuer this flow trusts", code="id_token_wrong_issuer")
    aud = claims["aud"]
    audiences = (aud,) if isinstance(aud, str) else tuple(aud)
    if rules.client_id not in audiences:
        raise IdTokenError("aud does not contain this client's id", code="id_token_wrong_audience")
    if set(audiences) - {rules.client_id} - rules.trusted_audiences:
        raise IdTokenError(
            "aud lists an audience this client does not trust", code="id_token_untrusted_audience"
        )
    azp = claims.get("azp")
    if len(set(audiences)) > 1 and azp is None:
        raise IdTokenError("several audiences and no azp", code="id_token_azp_missing")
    if azp is not None and azp != rules.client_id:
        raise IdTokenError("azp is not this client's id", code="id_token_wrong_azp")


def _check_times(claims: Mapping[str, Any], rules: IdTokenRules, now: float) -> None:
    leeway = rules.leeway
    if now >= claims["exp"] + leeway:
        raise IdTokenError("the ID token has expired", code="id_token_expired")
    if claims["iat"] > now + leeway:
        raise IdTokenError("the ID token says it was issued in the future", code="id_token_issued_in_future")
    if "nbf" in claims and claims["nbf"] > now + leeway:
        raise IdTokenError("the ID token is not valid yet (nbf)", code="id_token_not_yet_valid")
    if rules.max_age is None:
        return
    if "auth_time" not in claims:
        raise IdTokenError("max_age was asked and auth_time is absent", code="id_token_auth_time_missing")
    if now > claims["auth_time"] + rules.max_age + leeway:
        raise IdTokenError("the person authenticated longer ago than max_age", code="id_token_auth_too_old")


def _check_nonce(claims: Mapping[str, Any], rules: IdTokenRules) -> None:
    if rules.nonce_hash is None:
        return
    nonce = claims.get("nonce")
    if nonce is None:
        raise IdTokenError("the flow sent a nonce and the ID token has none", code="id_token_nonce_missing")
    if not digests_equal(nonce_hash(nonce), rules.nonce_hash):
        raise IdTokenError("the ID token's nonce is not this flow's", code="id_token_nonce_mismatch")


def left_half_hash(value: str, alg: str) -> str:
    """``at_hash``/``c_hash`` of ``value``: base64url of the left half of its hash under ``alg``'s hash."""
    hashed = hashlib.new(ALGORITHMS[alg].hash_name, value.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(hashed[: len(hashed) // 2]).rstrip(b"=").decode("ascii")


def _check_at_hash(at_hash: str, access_token: str, alg: str) -> None:
    expected = left_half_hash(access_token, alg)
    if not hmac.compare_digest(expected.encode("ascii"), at_hash.encode("utf-8", "surrogatepass")):
        raise IdTokenError("at_hash is not the hash of the access token", code="id_token_at_hash_mismatch")
