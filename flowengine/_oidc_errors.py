"""The errors of OpenID Connect: discovery, key sets, ID tokens and userinfo, each code stable.

Every refusal has its own code, so a program (and a test) can tell a wrong audience
from an expired token without reading messages. ``OIDC_CODES`` lists every code with
one line saying what it means; docs/oidc.md shows the same table, and a test keeps
the two equal. Messages name claims and headers, never the token or a claim's value
that could identify the person (``sub``, ``nonce``).
The error classes themselves are in ``_errors`` with every other code (ErrorCode);
they are re-exported here for the OIDC modules.
"""

from __future__ import annotations

from collections.abc import Callable

from flowengine._errors import DiscoveryError, FlowError, IdTokenError, JwksError, UserinfoError

__all__ = [
    "OIDC_CODES",
    "DiscoveryError",
    "IdTokenError",
    "JwksError",
    "Refusal",
    "UserinfoError",
    "refuse_id_token",
    "refuse_userinfo",
]


#: Builds the error for one refusal of a signed JWT: (code suffix, message) -> error.
#: ID tokens and signed userinfo answers share the JWS checks but not their codes.
Refusal = Callable[[str, str], FlowError]


def refuse_id_token(suffix: str, message: str) -> FlowError:
    """An ``IdTokenError`` coded ``id_token_<suffix>``."""
    return IdTokenError(message, code=f"id_token_{suffix}")


def refuse_userinfo(suffix: str, message: str) -> FlowError:
    """A ``UserinfoError`` coded ``userinfo_<suffix>``."""
    return UserinfoError(message, code=f"userinfo_{suffix}")


#: Every code the OIDC modules raise, and what it means.
OIDC_CODES: dict[str, str] = {
    # Discovery (ConfigError for what the caller gave, DiscoveryError for what came back).
    "issuer_invalid": "the issuer asked for is not https (http only on loopback) or has a query or fragment",
    "discovery_invalid": "the document is not a bounded JSON object with the required, well-typed fields",
    "discovery_unavailable": "the discovery endpoint answered 429 or 5xx, or could not be reached",
    "discovery_issuer_mismatch": "the document's issuer is not exactly the issuer asked for",
    "discovery_insecure_url": "an endpoint in the document is not https (http only on loopback) or is unsafe",
    "discovery_endpoint_missing": "the spec uses an endpoint it does not write and the document lacks",
    # Key sets.
    "jwks_invalid": "the key set is not a bounded JSON object with a usable signing key",
    "jwks_unavailable": "the key set could not be fetched now (429/5xx, or a fetch is throttled)",
    # ID tokens.
    "id_token_rules_invalid": "an empty or unsupported allow-list, a leeway over 300 s, a negative max_age",
    "id_token_missing": "the token answer of an openid flow carries no id_token",
    "id_token_malformed": "not a compact signed JWT with JSON header and claims (or an encrypted one)",
    "id_token_alg_not_allowed": "alg is none, an HMAC, or not on the allow-list",
    "id_token_unknown_key": "no key of the issuer's set matches kid/alg, even after the allowed refetch",
    "id_token_invalid_signature": "the signature does not verify with the issuer's key",
    "id_token_claim_missing": "iss, sub, aud, exp or iat is absent",
    "id_token_claim_invalid": "a claim has the wrong type (a string exp, a sub over 255 characters...)",
    "id_token_wrong_issuer": "iss is not exactly the issuer",
    "id_token_wrong_audience": "aud does not contain the client id",
    "id_token_untrusted_audience": "aud lists an audience the client does not trust",
    "id_token_azp_missing": "several audiences and no azp",
    "id_token_wrong_azp": "azp is not the client id",
    "id_token_expired": "exp is past (beyond the leeway)",
    "id_token_issued_in_future": "iat is ahead of now (beyond the leeway)",
    "id_token_not_yet_valid": "nbf is ahead of now (beyond the leeway)",
    "id_token_nonce_missing": "the flow sent a nonce and the token has none",
    "id_token_nonce_mismatch": "the token's nonce is not the flow's (a replayed or foreign token)",
    "id_token_at_hash_mismatch": "at_hash is not the left half of the access token's hash",
    "id_token_auth_time_missing": "max_age was asked and auth_time is absent",
    "id_token_auth_too_old": "the person authenticated longer ago than max_age allows",
    # Userinfo.
    "userinfo_unauthorized": "the userinfo endpoint refused the access token (401/403)",
    "userinfo_unavailable": "the userinfo endpoint answered 429 or 5xx (retryable)",
    "userinfo_invalid": "the answer is not a bounded JSON object (or signed JWT) with a string sub",
    "userinfo_sub_mismatch": "userinfo's sub is not the ID token's (OIDC Core §5.3.4)",
    "userinfo_malformed": "a signed answer that is not a compact signed JWT",
    "userinfo_alg_not_allowed": "a signed answer with alg none, an HMAC, or one off the allow-list",
    "userinfo_unknown_key": "a signed answer whose key is not in the issuer's set",
    "userinfo_invalid_signature": "a signed answer whose signature does not verify",
    "userinfo_wrong_issuer": "a signed answer whose iss is not the issuer",
    "userinfo_wrong_audience": "a signed answer whose aud does not contain the client id",
    # Signed client authentication (ConfigError: the engine's own settings).
    "client_key_invalid": "the private_key_jwt key is not a private RSA (2048+ bits) or EC key for its alg",
    "client_secret_too_short": "client_secret_jwt needs a secret as long as the hash (RFC 7518 §3.2)",
    "client_auth_invalid": "an assertion setting (alg, lifetime, token endpoint) is out of bounds",
}
