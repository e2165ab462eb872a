"""ID token validation (OpenID Connect Core 1.0 §3.1.3.7) against tokens Authlib's provider issues.

Each refusal has its own code. The spoiled tokens come from the provider's token endpoint in a
real code flow (PKCE, nonce) or from its keys directly; the key set always comes from its JWKS
through the key cache, as the engine's driver will fetch it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import flowengine as fe
import pytest
from flowengine._jwks import JwksCache, SigningKey, read_jwks
from flowengine._oidc import (
    IdTokenRules,
    left_half_hash,
    nonce_hash,
    read_id_token,
    validate_id_token,
    verify_id_token,
)
from flowengine._oidc_errors import IdTokenError
from joserfc import jws, jwt
from joserfc.jwk import RSAKey

from tests.oidc.helpers import keys_for
from tests.support import oidc_tokens
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, USER, OidcProvider, Sabotage

NOW = 1_800_000_000.0


def _new_nonce() -> str:
    """A nonce as a client would draw one (the engine draws its own with each flow's state)."""
    return secrets.token_urlsafe(32)


async def _keys(provider: OidcProvider, transport: fe.Transport) -> tuple[SigningKey, ...]:
    return read_jwks(await transport.send(fe.HttpRequest("GET", provider.jwks_uri)))


def _rules(provider: OidcProvider, nonce: str | None = None, **kw: Any) -> IdTokenRules:
    kw.setdefault("nonce_hash", nonce_hash(nonce) if nonce else None)
    return IdTokenRules(issuer=provider.issuer, client_id=CLIENT_ID, **kw)


async def _login(provider: OidcProvider, transport: fe.Transport, nonce: str) -> dict[str, Any]:
    """A code flow at the provider, redeemed over the project's transport: the token answer."""
    grant = provider.authorize(nonce=nonce)
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    request = fe.HttpRequest(
        "POST",
        provider.token_endpoint,
        {"content-type": "application/x-www-form-urlencoded", "authorization": f"Basic {basic}"},
        urlencode(grant.token_form()).encode(),
    )
    response = await transport.send(request)
    assert response.status == 200, response.body
    answer: dict[str, Any] = json.loads(response.body)
    return answer


async def _validate_login(
    provider: OidcProvider, transport: fe.Transport, answer: dict[str, Any], nonce: str
) -> fe.FlowError | Any:
    """What the engine will do with a token answer: header, keys through the cache, then the checks."""
    rules, now = _rules(provider, nonce), time.time()
    parsed = read_id_token(answer["id_token"], rules)
    keys = await keys_for(JwksCache(), transport, provider, parsed.header, now)
    return verify_id_token(parsed, keys, rules, now=now, access_token=answer["access_token"])


async def test_the_id_token_of_a_real_login_is_valid(provider: OidcProvider, transport: fe.Transport) -> None:
    nonce = _new_nonce()
    answer = await _login(provider, transport, nonce)
    token = await _validate_login(provider, transport, answer, nonce)
    assert (token.issuer, token.subject, token.audience) == (provider.issuer, USER.sub, (CLIENT_ID,))
    assert token.account == fe.AccountRef(type=provider.issuer, id=USER.sub)
    assert token.claims["at_hash"] == left_half_hash(answer["access_token"], "RS256")
    assert token.claims["email"] == USER.email and token.auth_time is not None
    with pytest.raises(TypeError):
        token.claims["sub"] = "someone else"  # type: ignore[index]
    assert answer["id_token"] not in repr(token) and USER.sub not in repr(token)
    assert token.raw == answer["id_token"]


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256"])
async def test_each_default_algorithm_is_accepted(
    provider: OidcProvider, transport: fe.Transport, alg: str
) -> None:
    provider.sign_with(alg)
    nonce = _new_nonce()
    token = await _validate_login(provider, transport, await _login(provider, transport, nonce), nonce)
    assert token.header.alg == alg


REFUSALS = {
    Sabotage.BAD_SIGNATURE: "id_token_invalid_signature",
    Sabotage.WRONG_AUDIENCE: "id_token_wrong_audience",
    Sabotage.EXPIRED: "id_token_expired",
    Sabotage.ALG_NONE: "id_token_alg_not_allowed",
    Sabotage.HS256_PUBLIC_KEY: "id_token_alg_not_allowed",
    Sabotage.MISSING_NONCE: "id_token_nonce_missing",
    Sabotage.REPLAYED_NONCE: "id_token_nonce_mismatch",
    Sabotage.WRONG_ISSUER: "id_token_wrong_issuer",
    Sabotage.UNKNOWN_KID: "id_token_unknown_key",
    Sabotage.ISSUED_IN_FUTURE: "id_token_issued_in_future",
    Sabotage.WRONG_AT_HASH: "id_token_at_hash_mismatch",
}


@pytest.mark.parametrize("sabotage", list(Sabotage), ids=[s.value for s in Sabotage])
async def test_each_spoiled_token_from_the_token_endpoint_is_refused_with_its_code(
    provider: OidcProvider, transport: fe.Transport, sabotage: Sabotage
) -> None:
    provider.authorize(nonce=_new_nonce())  # an earlier flow, whose nonce a replay would carry
    provider.sabotage_next(sabotage)
    nonce = _new_nonce()
    answer = await _login(provider, transport, nonce)
    with pytest.raises(IdTokenError) as error:
        await _validate_login(provider, transport, answer, nonce)
    assert error.value.code == REFUSALS[sabotage]
    assert answer["id_token"] not in str(error.value) and nonce not in str(error.value)


def test_every_sabotage_has_its_expected_refusal() -> None:
    assert set(REFUSALS) == set(Sabotage)


async def test_the_hmac_forgery_is_the_real_attack_and_hmac_cannot_be_allowed(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    forged = provider.mint_id_token(sabotage=Sabotage.HS256_PUBLIC_KEY, now=NOW)
    rsa = RSAKey.import_key(next(k for k in provider.public_jwks()["keys"] if k["kty"] == "RSA"))
    head, body, signature = forged.split(".")
    naive = hmac.new(rsa.as_pem(private=False), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(naive).rstrip(b"=").decode() == signature  # a naive verifier says yes
    with pytest.raises(IdTokenError) as error:
        validate_id_token(forged, await _keys(provider, transport), _rules(provider), now=NOW)
    assert error.value.code == "id_token_alg_not_allowed"
    for allow in (("HS256",), ("RS256", "HS256"), ("none",), ()):
        with pytest.raises(fe.ConfigError) as config:
            _rules(provider, algorithms=allow)
        assert config.value.code == "id_token_rules_invalid"


async def test_an_alg_off_a_narrowed_allow_list_is_refused(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    keys = await _keys(provider, transport)
    rules = _rules(provider, algorithms=["ES256"])
    assert (
        validate_id_token(provider.mint_id_token(alg="ES256", now=NOW), keys, rules, now=NOW).header.alg
        == "ES256"
    )
    with pytest.raises(IdTokenError) as error:
        validate_id_token(provider.mint_id_token(alg="RS256", now=NOW), keys, rules, now=NOW)
    assert error.value.code == "id_token_alg_not_allowed"


async def test_a_header_naming_an_ec_alg_with_an_rsa_kid_finds_no_key(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    keys = await _keys(provider, transport)
    rsa_kid = next(k.kid for k in keys if k.kty == "RSA")
    ec = next(k for k in provider.state.keys.current if k.key_type == "EC")
    confused = jwt.encode({"alg": "ES256", "kid": rsa_kid}, _claims(provider), ec, algorithms=["ES256"])
    with pytest.raises(IdTokenError) as error:
        validate_id_token(confused, keys, _rules(provider), now=NOW)
    assert error.value.code == "id_token_unknown_key"


# Claim checks, on tokens signed by the provider's keys ----------------------------------------


def _claims(provider: OidcProvider, **changes: Any) -> dict[str, Any]:
    claims = oidc_tokens.honest_claims(provider.state, now=NOW)
    for name, value in changes.items():
        if value is ...:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


async def _check(
    provider: OidcProvider, transport: fe.Transport, claims: dict[str, Any], **rules: Any
) -> fe.FlowError | None:
    raw = oidc_tokens.sign(provider.state, claims, "RS256")
    try:
        validate_id_token(raw, await _keys(provider, transport), _rules(provider, **rules), now=NOW)
    except fe.FlowError as error:
        return error
    return None


def _code(error: fe.FlowError | None) -> str | None:
    return None if error is None else error.code


@pytest.mark.parametrize(
    ("changes", "rules", "code"),
    [
        ({}, {}, None),
        ({"aud": CLIENT_ID}, {}, None),  # a single audience may be a string
        ({"aud": [CLIENT_ID, "api"], "azp": CLIENT_ID}, {"trusted_audiences": ["api"]}, None),
        ({"aud": [CLIENT_ID, "api"]}, {"trusted_audiences": ["api"]}, "id_token_azp_missing"),
        ({"aud": [CLIENT_ID, "api"], "azp": CLIENT_ID}, {}, "id_token_untrusted_audience"),
        ({"azp": "another-client"}, {}, "id_token_wrong_azp"),
        ({"aud": []}, {}, "id_token_claim_invalid"),
        ({"aud": [7]}, {}, "id_token_claim_invalid"),
        ({"iss": "https://op.example"}, {}, "id_token_wrong_issuer"),
        ({"exp": NOW - 59}, {}, None),  # within the 60 s leeway
        ({"exp": NOW - 60}, {}, "id_token_expired"),
        ({"exp": NOW - 5}, {"leeway": 0}, "id_token_expired"),
        ({"iat": NOW + 59}, {}, None),
        ({"iat": NOW + 61}, {}, "id_token_issued_in_future"),
        ({"nbf": NOW + 120}, {}, "id_token_not_yet_valid"),
        ({"exp": "soon"}, {}, "id_token_claim_invalid"),
        ({"iat": True}, {}, "id_token_claim_invalid"),
        ({"auth_time": -1}, {}, "id_token_claim_invalid"),
        ({"sub": "x" * 256}, {}, "id_token_claim_invalid"),
        ({"sub": "caf\u00e9"}, {}, "id_token_claim_invalid"),
        ({"sub": ""}, {}, "id_token_claim_invalid"),
        ({"sub": 42}, {}, "id_token_claim_invalid"),
        ({"nonce": 42}, {}, "id_token_claim_invalid"),
        ({"sub": ...}, {}, "id_token_claim_missing"),
        ({"iss": ...}, {}, "id_token_claim_missing"),
        ({"aud": ...}, {}, "id_token_claim_missing"),
        ({"exp": ...}, {}, "id_token_claim_missing"),
        ({"iat": ...}, {}, "id_token_claim_missing"),
        ({"auth_time": NOW - 300}, {"max_age": 600}, None),
        ({"auth_time": NOW - 700}, {"max_age": 600}, "id_token_auth_too_old"),
        ({"auth_time": ...}, {"max_age": 600}, "id_token_auth_time_missing"),
        ({"auth_time": ...}, {}, None),
    ],
)
async def test_claims_are_checked_as_core_says(
    provider: OidcProvider,
    transport: fe.Transport,
    changes: dict[str, Any],
    rules: dict[str, Any],
    code: str | None,
) -> None:
    assert _code(await _check(provider, transport, _claims(provider, **changes), **rules)) == code


async def test_the_nonce_is_compared_by_digest(provider: OidcProvider, transport: fe.Transport) -> None:
    nonce = _new_nonce()
    assert nonce_hash(nonce) == fe.digest(nonce)
    good = _claims(provider, nonce=nonce)
    assert await _check(provider, transport, good, nonce_hash=nonce_hash(nonce)) is None
    other = await _check(
        provider, transport, _claims(provider, nonce=_new_nonce()), nonce_hash=nonce_hash(nonce)
    )
    assert _code(other) == "id_token_nonce_mismatch"
    assert await _check(provider, transport, good) is None  # a flow that sent no nonce checks none


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256"])
def test_at_hash_is_the_left_half_of_the_algs_hash(alg: str) -> None:
    assert left_half_hash("an-access-token", alg) == oidc_tokens.at_hash("an-access-token", alg)
    assert left_half_hash("an-access-token", "RS384") == oidc_tokens.at_hash("an-access-token", "RS384")


async def test_at_hash_is_checked_when_the_access_token_is_given(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    keys, rules = await _keys(provider, transport), _rules(provider)
    raw = provider.mint_id_token(access_token="the-access-token", now=NOW)
    assert validate_id_token(raw, keys, rules, now=NOW, access_token="the-access-token")
    with pytest.raises(IdTokenError) as error:
        validate_id_token(raw, keys, rules, now=NOW, access_token="another-access-token")
    assert error.value.code == "id_token_at_hash_mismatch"


def _unsigned(header: dict[str, Any], payload: bytes) -> str:
    def seg(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{seg(json.dumps(header).encode())}.{seg(payload)}.{seg(b'sig')}"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "id_token_malformed"),
        ("not-a-jwt", "id_token_malformed"),
        ("a.b", "id_token_malformed"),
        ("a.b.c.d.e", "id_token_malformed"),  # encrypted (JWE) tokens are not supported
        ("\u00e9.b.c", "id_token_malformed"),
        ("x" * 70_000, "id_token_malformed"),
        ("!!!.@@@.###", "id_token_malformed"),
        (_unsigned({"kid": "k"}, b"{}"), "id_token_malformed"),  # no alg
        (_unsigned({"alg": 256}, b"{}"), "id_token_malformed"),
        (_unsigned({"alg": "RS256", "kid": 7}, b"{}"), "id_token_malformed"),
        (_unsigned({"alg": "NONE"}, b"{}"), "id_token_alg_not_allowed"),
        (_unsigned({"alg": "RS256", "crit": ["exp"], "exp": 1}, b"{}"), "id_token_malformed"),
        (_unsigned({"alg": "RS256", "b64": False, "crit": ["b64"]}, b"{}"), "id_token_malformed"),
        (12345, "id_token_malformed"),
    ],
)
def test_tokens_that_are_not_signed_jwts_are_malformed(raw: Any, code: str) -> None:
    with pytest.raises(IdTokenError) as error:
        read_id_token(raw, IdTokenRules(issuer="https://op.example", client_id=CLIENT_ID))
    assert error.value.code == code


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b'{"a":' * 40 + b"1" + b"}" * 40])
async def test_signed_claims_that_are_not_a_bounded_object_are_malformed(
    provider: OidcProvider, transport: fe.Transport, payload: bytes
) -> None:
    key = provider.state.keys.for_alg("RS256")
    raw = jws.serialize_compact({"alg": "RS256", "kid": key.kid}, payload, key, algorithms=["RS256"])
    with pytest.raises(IdTokenError) as error:
        validate_id_token(raw, await _keys(provider, transport), _rules(provider), now=NOW)
    assert error.value.code == "id_token_malformed"


def test_rules_out_of_bounds_are_config_errors() -> None:
    for bad in (
        {"leeway": 301},
        {"leeway": -1},
        {"max_age": -1},
        {"max_age": 1.5},
        {"algorithms": ["XS256"]},
    ):
        with pytest.raises(fe.ConfigError) as error:
            IdTokenRules(issuer="https://op.example", client_id=CLIENT_ID, **bad)
        assert error.value.code == "id_token_rules_invalid"
    rules = IdTokenRules(issuer="https://op.example", client_id=CLIENT_ID, algorithms=["ES256", "ES256"])
    assert rules.algorithms == ("ES256",)
