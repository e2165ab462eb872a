"""How the test OpenID provider signs ID tokens, honestly or spoiled on demand.

Honest tokens are signed by joserfc with the provider's current keys (in the Authlib flow,
Authlib signs them itself and this module only re-signs a spoiled copy). The two forgeries
no library will make are built here by hand, on purpose: ``alg: none`` and an ``HS256``
token keyed with the provider's *public* RSA key, the classic algorithm-confusion attack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.support.keys import rsa_key
from tests.support.oidc_models import CLIENT_ID, USER, ProviderState, Sabotage, User


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def at_hash(access_token: str, alg: str) -> str:
    """OIDC Core §3.1.3.6, computed independently of the code under test."""
    bits = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[alg[-3:]]
    digest = bits(access_token.encode("ascii")).digest()
    return _b64(digest[: len(digest) // 2])


def honest_claims(
    state: ProviderState,
    *,
    user: User = USER,
    client_id: str = CLIENT_ID,
    nonce: str | None = None,
    now: float | None = None,
    lifetime: int = 3600,
) -> dict[str, Any]:
    """The claims of a valid ID token for ``user``, issued now."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": state.issuer,
        "sub": user.sub,
        "aud": [client_id],
        "iat": issued,
        "exp": issued + lifetime,
        "auth_time": issued,
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return claims


def spoil(claims: dict[str, Any], sabotage: Sabotage | None, state: ProviderState) -> dict[str, Any]:
    """``claims`` changed as ``sabotage`` asks (signature sabotages leave them alone)."""
    out = dict(claims)
    issued = int(out.get("iat", time.time()))
    if sabotage is Sabotage.WRONG_AUDIENCE:
        out["aud"] = ["someone-else"]
    elif sabotage is Sabotage.EXPIRED:
        out["iat"], out["exp"] = issued - 7200, issued - 3600
    elif sabotage is Sabotage.MISSING_NONCE:
        out.pop("nonce", None)
    elif sabotage is Sabotage.REPLAYED_NONCE:
        with state.lock:
            earlier = [n for n in state.nonces if n != out.get("nonce")]
        out["nonce"] = earlier[-1] if earlier else "a-nonce-of-another-flow"
    elif sabotage is Sabotage.WRONG_ISSUER:
        out["iss"] = "https://impostor.example"
    elif sabotage is Sabotage.ISSUED_IN_FUTURE:
        out["iat"] = issued + 3600
        out["exp"] = issued + 7200
    elif sabotage is Sabotage.WRONG_AT_HASH:
        out["at_hash"] = at_hash("some-other-access-token", "RS256")
    return out


def sign(state: ProviderState, claims: dict[str, Any], alg: str, sabotage: Sabotage | None = None) -> str:
    """``claims`` signed with ``alg`` by the provider's current key, or forged as ``sabotage`` says."""
    key = state.keys.for_alg(alg)
    if sabotage is Sabotage.ALG_NONE:
        with warnings.catch_warnings():  # joserfc rightly warns that "none" is deprecated: that is the point
            warnings.simplefilter("ignore")
            return jwt.encode({"alg": "none"}, claims, None, algorithms=["none"])  # type: ignore[arg-type]
    if sabotage is Sabotage.HS256_PUBLIC_KEY:
        rsa = state.keys.for_alg("RS256")
        header = {"typ": "JWT", "alg": "HS256", "kid": rsa.kid}
        signing_input = f"{_segment(header)}.{_segment(claims)}"
        secret = rsa.as_pem(private=False)
        mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"
    if sabotage in (Sabotage.BAD_SIGNATURE, Sabotage.UNKNOWN_KID):
        impostor: RSAKey | ECKey = ECKey.generate_key("P-256") if alg.startswith("ES") else rsa_key(1)
        kid = key.kid if sabotage is Sabotage.BAD_SIGNATURE else "never-published"
        return jwt.encode({"alg": alg, "kid": kid}, claims, impostor, algorithms=[alg])
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])
