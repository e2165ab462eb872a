"""An issuer's signing keys (its ``jwks_uri``), kept per issuer and refreshed within bounds.

Providers rotate keys: a token may name a ``kid`` we have not seen. ``JwksCache.resolve``
then asks for one refetch, but at most one fetch per ``refetch_interval`` per issuer, so a
flood of tokens carrying random ``kid`` values cannot make the engine hammer the provider.
It is sans-I/O: ``resolve`` answers either the keys to try or the ``HttpRequest`` to send,
and ``accept`` reads the answer. Only public RSA (2048 bits or more) and EC keys meant for
signatures are kept; private members a provider publishes by mistake are dropped unread.

joserfc is imported when a key set is read, never by ``import flowengine``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs

from flowengine._http import HttpRequest, HttpResponse
from flowengine._oidc_errors import JwksError, Refusal, refuse_id_token
from flowengine._oidc_http import CachePolicy, fresh_until, get_json_request, read_json_object

if TYPE_CHECKING:
    from joserfc.jwk import DictKey, ECKey, RSAKey

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "FetchKeys",
    "JwksCache",
    "JwsHeader",
    "KeysFound",
    "SigningKey",
    "parse_jwks",
    "read_jwks",
    "rsa_modulus_bits",
    "select_keys",
]

#: A key set holding more keys than this is refused (real ones hold a handful).
MAX_KEYS = 100
MIN_RSA_BITS = 2048


@attrs.frozen(slots=True)
class Algorithm:
    """What an asymmetric JWS algorithm needs: the key type, the curve, the hash (for ``at_hash``)."""

    kty: str
    crv: str | None
    hash_name: str


#: The algorithms an allow-list may name. HMAC and ``none`` are absent on purpose: an ID
#: token is verified with the issuer's public key, and a public key is no HMAC secret.
ALGORITHMS: dict[str, Algorithm] = {
    **{f"RS{n}": Algorithm("RSA", None, f"sha{n}") for n in (256, 384, 512)},
    **{f"PS{n}": Algorithm("RSA", None, f"sha{n}") for n in (256, 384, 512)},
    "ES256": Algorithm("EC", "P-256", "sha256"),
    "ES384": Algorithm("EC", "P-384", "sha384"),
    "ES512": Algorithm("EC", "P-521", "sha512"),
}


@attrs.frozen(slots=True)
class JwsHeader:
    """The parts of a JWS header that choose the key: ``alg`` (already allowed) and ``kid``."""

    alg: str
    kid: str | None = None
    typ: str | None = None


@attrs.frozen(slots=True)
class SigningKey:
    """One public signing key of an issuer, as its key set describes it."""

    kty: str
    kid: str | None
    alg: str | None
    crv: str | None
    key: RSAKey | ECKey = attrs.field(repr=False, eq=False)

    def fits(self, alg: str) -> bool:
        """True when this key can verify ``alg`` (type, curve, and the key's own ``alg``)."""
        wanted = ALGORITHMS.get(alg)
        if wanted is None or self.kty != wanted.kty or (wanted.crv is not None and self.crv != wanted.crv):
            return False
        return self.alg is None or self.alg == alg


def select_keys(keys: Sequence[SigningKey], header: JwsHeader) -> tuple[SigningKey, ...]:
    """The keys that may have signed a JWS with ``header``.

    With a ``kid``: the fitting keys of that ``kid`` (or, when none has it, fitting keys that
    carry no ``kid`` at all). Without one: every fitting key; they are all the issuer's.
    """
    fitting = [key for key in keys if key.fits(header.alg)]
    if header.kid is None:
        return tuple(fitting)
    named = tuple(key for key in fitting if key.kid == header.kid)
    return named or tuple(key for key in fitting if key.kid is None)


def parse_jwks(document: Mapping[str, Any]) -> tuple[SigningKey, ...]:
    """The usable signing keys of a JWK Set document; ``JwksError`` when there are none."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JwksError("the key set has no 'keys' list", code="jwks_invalid")
    if len(keys) > MAX_KEYS:
        raise JwksError(f"the key set holds more than {MAX_KEYS} keys", code="jwks_invalid")
    usable = tuple(key for key in (_signing_key(item) for item in keys) if key is not None)
    if not usable:
        raise JwksError("the key set holds no usable RSA or EC signing key", code="jwks_invalid")
    return usable


def _signing_key(item: object) -> SigningKey | None:
    """The key ``item`` describes, or None for one that is not a public signing key we can use."""
    if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC"):
        return None
    kid, alg, use, ops = item.get("kid"), item.get("alg"), item.get("use"), item.get("key_ops")
    if not (kid is None or isinstance(kid, str)) or (use is not None and use != "sig"):
        return None
    if alg is not None and alg not in ALGORITHMS:  # an encryption key, or an HMAC we never use
        return None
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    key = _import_public(item)
    if key is None:
        return None
    crv = item.get("crv") if item["kty"] == "EC" else None
    return SigningKey(item["kty"], kid, alg, crv if isinstance(crv, str) else None, key)


def _import_public(item: dict[str, Any]) -> RSAKey | ECKey | None:
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey, RSAKey

    try:
        if item["kty"] == "RSA":
            if rsa_modulus_bits(item.get("n")) < MIN_RSA_BITS:  # checked first: joserfc would warn on import
                return None
            return RSAKey.import_key(cast("DictKey", {"kty": "RSA", "n": item["n"], "e": item.get("e")}))
        if item.get("crv") not in ("P-256", "P-384", "P-521"):
            return None
        public = {"kty": "EC", "crv": item["crv"], "x": item.get("x"), "y": item.get("y")}
        return ECKey.import_key(cast("DictKey", public))
    except (JoseError, ValueError, TypeError, KeyError):
        return None


def rsa_modulus_bits(n: object) -> int:
    """The size in bits of a JWK's base64url modulus ``n`` (0 when it is not one)."""
    if not isinstance(n, str) or len(n) > 2048:  # 2048 base64 characters: a 12,288-bit modulus
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()


def read_jwks(response: HttpResponse) -> tuple[SigningKey, ...]:
    """The usable keys in an answer from a ``jwks_uri``, or ``JwksError``."""
    if response.status != 200:
        transient = response.status == 429 or response.status >= 500
        raise JwksError(
            f"the key set endpoint answered {response.status}",
            code="jwks_unavailable" if transient else "jwks_invalid",
            retryable=transient,
            status=response.status,
        )
    document = read_json_object(response, what="the key set", fail=_invalid)
    return parse_jwks(document)


def _invalid(message: str) -> JwksError:
    return JwksError(message, code="jwks_invalid")


@attrs.frozen(slots=True)
class KeysFound:
    """``resolve``'s answer when the cached set holds keys for the header: try these."""

    keys: tuple[SigningKey, ...]


@attrs.frozen(slots=True)
class FetchKeys:
    """``resolve``'s answer when the set must be fetched: send ``request``, ``accept`` the answer.

    ``reason`` is ``missing`` (never fetched), ``stale`` (past its freshness) or
    ``unknown_key`` (a ``kid`` the set does not hold: perhaps a rotation).
    """

    request: HttpRequest
    reason: str


@attrs.frozen(slots=True)
class _Entry:
    jwks_uri: str
    keys: tuple[SigningKey, ...]
    fetched_at: float
    fresh_until: float


@attrs.define
class JwksCache:
    """Key sets by issuer, each fresh as its HTTP headers say, refetched at most once per interval.

    ``resolve`` and ``accept`` do not await: on one event loop they need no lock. Two
    flows that meet the same unknown ``kid`` at once get one fetch between them; the
    second is refused (``*_unknown_key``) unless the driver waits for the first fetch.
    """

    policy: CachePolicy = attrs.field(factory=CachePolicy)
    refetch_interval: float = 60.0
    max_issuers: int = 256
    _entries: dict[str, _Entry] = attrs.field(factory=dict, init=False)
    _fetches: dict[str, float] = attrs.field(factory=dict, init=False)

    def resolve(
        self,
        issuer: str,
        jwks_uri: str,
        header: JwsHeader,
        now: float,
        *,
        refuse: Refusal = refuse_id_token,
        user_agent: str = "flowengine",
    ) -> KeysFound | FetchKeys:
        """The keys to verify a JWS with ``header``, or the one fetch allowed now.

        Raises ``refuse("unknown_key", ...)`` when no key fits and a fetch was made within
        the interval, and ``JwksError`` (``jwks_unavailable``) when there is no set at all
        and a fetch is throttled. A stale set is used while a refetch is throttled.
        """
        entry = self._entries.get(issuer)
        if entry is None or entry.jwks_uri != jwks_uri:
            if self.may_fetch(issuer, now):
                return self._fetch(issuer, jwks_uri, now, "missing", user_agent)
            raise JwksError(
                "the issuer's key set is not held and was fetched moments ago",
                code="jwks_unavailable",
                retryable=True,
                retry_after=self._wait(issuer, now),
            )
        if now >= entry.fresh_until and self.may_fetch(issuer, now):
            return self._fetch(issuer, jwks_uri, now, "stale", user_agent)
        found = select_keys(entry.keys, header)
        if found:
            return KeysFound(found)
        if self.may_fetch(issuer, now):
            return self._fetch(issuer, jwks_uri, now, "unknown_key", user_agent)
        raise refuse("unknown_key", "no key of the issuer's key set fits the token's kid and alg")

    def accept(
        self, issuer: str, jwks_uri: str, response: HttpResponse, now: float
    ) -> tuple[SigningKey, ...]:
        """Read and keep the answer to a ``FetchKeys``; a refused answer keeps the old set."""
        keys = read_jwks(response)
        self._entries.pop(issuer, None)
        self._entries[issuer] = _Entry(jwks_uri, keys, now, fresh_until(response, now, self.policy))
        while len(self._entries) > self.max_issuers:
            oldest = next(iter(self._entries))
            del self._entries[oldest]
            self._fetches.pop(oldest, None)
        return keys

    def keys(self, issuer: str) -> tuple[SigningKey, ...]:
        """Every key held for ``issuer``, fresh or not (empty when none)."""
        entry = self._entries.get(issuer)
        return entry.keys if entry is not None else ()

    def fresh_until(self, issuer: str) -> float | None:
        """Until when ``issuer``'s set is fresh, or None when none is held."""
        entry = self._entries.get(issuer)
        return entry.fresh_until if entry is not None else None

    def may_fetch(self, issuer: str, now: float) -> bool:
        """True when no fetch for ``issuer`` was handed out within ``refetch_interval``."""
        last = self._fetches.get(issuer)
        return last is None or now - last >= self.refetch_interval or now < last

    def _wait(self, issuer: str, now: float) -> float:
        return max(0.0, self._fetches.get(issuer, now) + self.refetch_interval - now)

    def _fetch(self, issuer: str, jwks_uri: str, now: float, reason: str, user_agent: str) -> FetchKeys:
        self._fetches.pop(issuer, None)
        self._fetches[issuer] = now
        while len(self._fetches) > 2 * self.max_issuers:  # issuers whose fetches never succeeded
            del self._fetches[next(iter(self._fetches))]
        return FetchKeys(get_json_request(jwks_uri, user_agent), reason)
