"""Signed JWTs from an issuer (ID tokens, signed userinfo): header, signature, claims.

Two steps, so the key lookup can happen between them without I/O here: ``parse_jws`` reads
the header and refuses ``alg: none``, HMAC and anything off the allow-list before any key
is touched; ``verify_jws`` checks the signature with the keys that fit the header, through
joserfc (RFC 7515/7518), and returns the claims as a read-only mapping. The key type must
match the algorithm's family (an ``RS256`` key never verifies an ``HS256`` token), so the
classic "HMAC with the public key as secret" forgery has no way in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from flowengine._errors import ConfigError
from flowengine._jwks import ALGORITHMS, JwsHeader, SigningKey, select_keys
from flowengine._oidc_errors import Refusal
from flowengine._oidc_http import MAX_DEPTH, freeze_json

if TYPE_CHECKING:
    from joserfc.jws import CompactSignature, JWSRegistry

__all__ = [
    "DEFAULT_ALGORITHMS",
    "MAX_JWT_CHARS",
    "ParsedJws",
    "check_algorithms",
    "parse_jws",
    "verify_jws",
]

#: The allow-list when a spec names none: what OpenID providers sign with in practice.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "PS256")
#: A JWT longer than this is refused unread (real ID tokens are a few kilobytes).
MAX_JWT_CHARS = 64 * 1024


def check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    """``algorithms`` as an allow-list, or ``ConfigError`` when empty or naming an unsupported alg.

    Only asymmetric algorithms are allowed (``ALGORITHMS``): never ``none``, never HMAC.
    """
    chosen = tuple(dict.fromkeys(algorithms))
    unsupported = [alg for alg in chosen if alg not in ALGORITHMS]
    if not chosen or unsupported:
        raise ConfigError(
            f"signing algorithms must be a non-empty subset of {', '.join(ALGORITHMS)}"
            + (f"; not {', '.join(repr(a)[:20] for a in unsupported)}" if unsupported else ""),
            code="id_token_rules_invalid",
        )
    return chosen


@attrs.frozen(slots=True)
class ParsedJws:
    """A compact JWS whose header was read and allowed; its signature is not checked yet."""

    header: JwsHeader
    raw: str = attrs.field(repr=False)
    compact: CompactSignature = attrs.field(repr=False, eq=False)


def _registry(alg: str | None = None) -> JWSRegistry:
    from joserfc.jws import JWSRegistry

    # Header parameters a provider adds (x5t, x5c...) are not refused; `crit` is (below).
    registry = JWSRegistry(algorithms=[alg] if alg else None, strict_check_header=False)
    registry.max_header_length = 8192
    return registry


def parse_jws(raw: object, algorithms: Sequence[str], refuse: Refusal) -> ParsedJws:
    """The header of ``raw``, refused as ``malformed`` or ``alg_not_allowed`` before any key is used."""
    from joserfc.errors import JoseError
    from joserfc.jws import extract_compact

    if not isinstance(raw, str) or not raw or len(raw) > MAX_JWT_CHARS or not raw.isascii():
        raise refuse("malformed", f"not a JWT of at most {MAX_JWT_CHARS} ASCII characters")
    if raw.count(".") == 4:
        raise refuse("malformed", "an encrypted (JWE) token; only signed tokens are supported")
    try:
        compact = extract_compact(raw.encode("ascii"), registry=_registry())
    except (JoseError, ValueError, TypeError, RecursionError):
        raise refuse("malformed", "not a compact JWS with a JSON header") from None
    header = compact.headers()
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
        raise refuse("malformed", "the header's alg or kid is not a string")
    if alg.lower() == "none":
        raise refuse("alg_not_allowed", "alg 'none' (an unsigned token) is never accepted")
    if alg not in algorithms:
        raise refuse(
            "alg_not_allowed", f"alg {alg[:20]!r} is not on the allow-list ({', '.join(algorithms)})"
        )
    if "crit" in header or header.get("b64") is False:
        raise refuse("malformed", "the header asks for extensions (crit, b64) no ID token uses")
    return ParsedJws(JwsHeader(alg, kid, typ if isinstance(typ, str) else None), raw, compact)


def verify_jws(parsed: ParsedJws, keys: Sequence[SigningKey], refuse: Refusal) -> Mapping[str, Any]:
    """The claims of ``parsed`` once one of the fitting ``keys`` verifies its signature.

    Refuses ``unknown_key`` (no key fits kid/alg), ``invalid_signature`` and ``malformed``
    (claims that are not a JSON object, or nested deeper than anything a claim needs).
    """
    from joserfc.errors import JoseError
    from joserfc.jws import validate_compact

    candidates = select_keys(keys, parsed.header)
    if not candidates:
        raise refuse("unknown_key", "no key of the issuer's key set fits the token's kid and alg")
    registry = _registry(parsed.header.alg)
    for candidate in candidates:
        try:
            if validate_compact(parsed.compact, candidate.key, registry=registry):
                break
        except (JoseError, ValueError, TypeError):
            continue
    else:
        raise refuse("invalid_signature", "the signature does not verify with the issuer's key")
    try:
        claims = json.loads(parsed.compact.payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise refuse("malformed", "the claims are not JSON") from None
    if not isinstance(claims, dict):
        raise refuse("malformed", "the claims are not a JSON object")
    frozen = freeze_json(claims)
    if frozen is None:
        raise refuse("malformed", f"the claims nest deeper than {MAX_DEPTH} levels")
    return frozen
