"""The issuer's key set: read from Authlib's provider, looked up by kid/alg, rotated, refetched in bounds."""

from __future__ import annotations

import json
import secrets
from typing import Any

import flowengine as fe
import pytest
from flowengine._jwks import (
    FetchKeys,
    JwksCache,
    JwsHeader,
    KeysFound,
    SigningKey,
    read_jwks,
    select_keys,
)
from flowengine._oidc import IdTokenRules, read_id_token, verify_id_token
from flowengine._oidc_errors import IdTokenError, JwksError, refuse_userinfo
from joserfc.jwk import ECKey, OctKey, RSAKey

from tests.oidc.helpers import keys_for
from tests.support.keys import rsa_key
from tests.support.oidc_provider import CLIENT_ID, OidcProvider

NOW = 1_800_000_000.0


def _rules(provider: OidcProvider) -> IdTokenRules:
    return IdTokenRules(issuer=provider.issuer, client_id=CLIENT_ID)


def _jwks(*keys: dict[str, Any]) -> fe.HttpResponse:
    return fe.HttpResponse(
        200, {"content-type": "application/json"}, json.dumps({"keys": list(keys)}).encode()
    )


def _public(key: RSAKey | ECKey, **extra: Any) -> dict[str, Any]:
    return {**key.as_dict(private=False), **extra}


async def test_the_providers_set_is_read(provider: OidcProvider, transport: fe.Transport) -> None:
    response = await transport.send(fe.HttpRequest("GET", provider.jwks_uri))
    keys = read_jwks(response)
    published = {k["kid"] for k in provider.public_jwks()["keys"]}
    assert {k.kid for k in keys} == published
    assert sorted(k.kty for k in keys) == ["EC", "RSA"]
    assert all(not k.key.is_private for k in keys)


def test_keys_not_meant_for_signatures_or_too_weak_are_left_out() -> None:
    rsa, ec = rsa_key(0, {"kid": "good-rsa"}), ECKey.generate_key("P-256", {"kid": "good-ec"})
    with pytest.warns(UserWarning, match="2048"):  # joserfc warns; the key set is refused it silently
        weak = RSAKey.generate_key(1024, {"kid": "weak"})
    keys = read_jwks(
        _jwks(
            _public(rsa, use="sig"),
            _public(ec, key_ops=["verify"]),
            _public(weak),
            _public(rsa_key(1), kid="enc", use="enc"),
            _public(rsa_key(2), kid="oaep", alg="RSA-OAEP"),
            _public(rsa_key(3), kid="ops", key_ops=["encrypt"]),
            _public(ECKey.generate_key("secp256k1"), kid="k1"),
            OctKey.generate_key(256, {"kid": "hmac"}).as_dict(private=True),
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            "not a key",
        )
    )
    assert [k.kid for k in keys] == ["good-rsa", "good-ec"]


def test_private_members_published_by_mistake_are_dropped() -> None:
    rsa = rsa_key(0, {"kid": "leaky"})
    (key,) = read_jwks(_jwks(rsa.as_dict(private=True)))
    assert not key.key.is_private


@pytest.mark.parametrize(
    ("response", "code", "retryable"),
    [
        (_jwks(), "jwks_invalid", False),
        (fe.HttpResponse(200, {}, b'{"keys": {}}'), "jwks_invalid", False),
        (
            fe.HttpResponse(200, {}, json.dumps({"keys": [{"kty": "RSA"}] * 101}).encode()),
            "jwks_invalid",
            False,
        ),
        (fe.HttpResponse(200, {}, b"<html>"), "jwks_invalid", False),
        (fe.HttpResponse(404, {}, b""), "jwks_invalid", False),
        (fe.HttpResponse(503, {}, b""), "jwks_unavailable", True),
    ],
    ids=["empty", "not-a-list", "too-many", "not-json", "404", "503"],
)
def test_unusable_key_sets_are_typed_refusals(response: fe.HttpResponse, code: str, retryable: bool) -> None:
    with pytest.raises(JwksError) as error:
        read_jwks(response)
    assert (error.value.code, error.value.retryable) == (code, retryable)


def _key(kty: str, kid: str | None, alg: str | None = None, crv: str | None = None, n: int = 0) -> SigningKey:
    """A key of ``kty``; RSA keys of one test differ by ``n``."""
    material = rsa_key(n) if kty == "RSA" else ECKey.generate_key(crv or "P-256")
    return SigningKey(kty, kid, alg, crv, material)


def test_keys_are_chosen_by_kid_then_by_what_the_alg_needs() -> None:
    rsa_a, rsa_b = _key("RSA", "a", n=0), _key("RSA", "b", alg="RS256", n=1)
    ec_256, ec_384 = _key("EC", "c", crv="P-256"), _key("EC", "d", crv="P-384")
    keys = [rsa_a, rsa_b, ec_256, ec_384]
    assert select_keys(keys, JwsHeader("RS256", "b")) == (rsa_b,)
    assert select_keys(keys, JwsHeader("PS256", "b")) == ()  # the key says it is for RS256 only
    assert select_keys(keys, JwsHeader("ES256", "a")) == ()  # an RSA key never verifies ES256
    assert select_keys(keys, JwsHeader("ES384", None)) == (ec_384,)
    assert select_keys(keys, JwsHeader("RS256", None)) == (rsa_a, rsa_b)
    assert select_keys(keys, JwsHeader("HS256", "a")) == ()  # no key ever fits an HMAC
    assert select_keys(keys, JwsHeader("RS256", "unknown")) == ()
    kidless = _key("RSA", None, n=2)
    assert select_keys([kidless], JwsHeader("RS256", "anything")) == (kidless,)


async def test_the_first_use_fetches_then_the_cache_answers(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    cache = JwksCache()
    parsed = read_id_token(provider.mint_id_token(now=NOW), _rules(provider))
    first = cache.resolve(provider.issuer, provider.jwks_uri, parsed.header, NOW)
    assert isinstance(first, FetchKeys) and first.reason == "missing"
    assert first.request.url == provider.jwks_uri and "authorization" not in first.request.headers
    cache.accept(provider.issuer, provider.jwks_uri, await transport.send(first.request), NOW)
    again = cache.resolve(provider.issuer, provider.jwks_uri, parsed.header, NOW + 1)
    assert isinstance(again, KeysFound) and [k.kid for k in again.keys] == [parsed.header.kid]


async def test_a_rotation_mid_run_costs_one_refetch(provider: OidcProvider, transport: fe.Transport) -> None:
    cache, rules = JwksCache(refetch_interval=60), _rules(provider)
    before = read_id_token(provider.mint_id_token(now=NOW), rules)
    await keys_for(cache, transport, provider, before.header, NOW)
    fetches = provider.jwks_fetches
    provider.rotate_keys()
    after = read_id_token(provider.mint_id_token(now=NOW), rules)
    assert after.header.kid != before.header.kid
    keys = await keys_for(cache, transport, provider, after.header, NOW + 61)
    token = verify_id_token(after, keys, rules, now=NOW + 61)
    assert token.header.kid == after.header.kid
    assert provider.jwks_fetches == fetches + 1


async def test_a_flood_of_unknown_kids_cannot_make_us_hammer_the_provider(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    cache, rules = JwksCache(refetch_interval=60), _rules(provider)
    await keys_for(
        cache, transport, provider, read_id_token(provider.mint_id_token(now=NOW), rules).header, NOW
    )
    fetches = provider.jwks_fetches
    refetch = cache.resolve(provider.issuer, provider.jwks_uri, JwsHeader("RS256", "random-1"), NOW + 61)
    assert isinstance(refetch, FetchKeys) and refetch.reason == "unknown_key"
    cache.accept(provider.issuer, provider.jwks_uri, await transport.send(refetch.request), NOW + 61)
    for n in range(200):
        header = JwsHeader("RS256", secrets.token_hex(8))
        with pytest.raises(IdTokenError) as error:
            cache.resolve(provider.issuer, provider.jwks_uri, header, NOW + 61 + n * 0.25)
        assert error.value.code == "id_token_unknown_key"
    assert provider.jwks_fetches == fetches + 1
    later = cache.resolve(provider.issuer, provider.jwks_uri, JwsHeader("RS256", "random-2"), NOW + 121)
    assert isinstance(later, FetchKeys)


def test_the_unknown_key_refusal_speaks_for_whoever_asked() -> None:
    cache = JwksCache()
    fetch = cache.resolve("https://op.example", "https://op.example/jwks", JwsHeader("RS256", "x"), NOW)
    assert isinstance(fetch, FetchKeys)
    key = rsa_key(0, {"kid": "x"})
    cache.accept("https://op.example", "https://op.example/jwks", _jwks(_public(key)), NOW)
    with pytest.raises(fe.FlowError) as error:
        cache.resolve(
            "https://op.example",
            "https://op.example/jwks",
            JwsHeader("RS256", "y"),
            NOW + 1,
            refuse=refuse_userinfo,
        )
    assert error.value.code == "userinfo_unknown_key"


async def test_a_stale_set_is_refetched_and_used_while_a_refetch_is_throttled(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.jwks_headers({"Cache-Control": "max-age=120"})
    cache = JwksCache(refetch_interval=60)
    header = read_id_token(provider.mint_id_token(now=NOW), _rules(provider)).header
    await keys_for(cache, transport, provider, header, NOW)
    assert cache.fresh_until(provider.issuer) == NOW + 120
    stale = cache.resolve(provider.issuer, provider.jwks_uri, header, NOW + 121)
    assert isinstance(stale, FetchKeys) and stale.reason == "stale"
    # Suppose that fetch failed: until the interval passes, the stale keys still serve.
    assert isinstance(cache.resolve(provider.issuer, provider.jwks_uri, header, NOW + 122), KeysFound)
    assert isinstance(cache.resolve(provider.issuer, provider.jwks_uri, header, NOW + 181), FetchKeys)


def test_without_any_set_a_throttled_fetch_is_a_retryable_refusal() -> None:
    cache = JwksCache(refetch_interval=60)
    header = JwsHeader("RS256", "k")
    assert isinstance(cache.resolve("https://op.example", "https://op.example/jwks", header, NOW), FetchKeys)
    with pytest.raises(JwksError) as error:  # the fetch failed; another one at once is not allowed
        cache.resolve("https://op.example", "https://op.example/jwks", header, NOW + 10)
    assert (error.value.code, error.value.retryable, error.value.retry_after) == (
        "jwks_unavailable",
        True,
        50,
    )


def test_a_refused_answer_keeps_the_set_held() -> None:
    cache, issuer, uri = JwksCache(), "https://op.example", "https://op.example/jwks"
    key = rsa_key(0, {"kid": "k"})
    cache.accept(issuer, uri, _jwks(_public(key)), NOW)
    with pytest.raises(JwksError):
        cache.accept(issuer, uri, fe.HttpResponse(503), NOW + 1)
    assert [k.kid for k in cache.keys(issuer)] == ["k"]


def test_a_new_jwks_uri_means_a_new_set() -> None:
    cache, issuer = JwksCache(), "https://op.example"
    cache.accept(issuer, f"{issuer}/jwks", _jwks(_public(rsa_key(0, {"kid": "k"}))), NOW)
    answer = cache.resolve(issuer, f"{issuer}/v2/jwks", JwsHeader("RS256", "k"), NOW + 61)
    assert isinstance(answer, FetchKeys) and answer.request.url == f"{issuer}/v2/jwks"


def test_the_cache_holds_a_bounded_number_of_issuers() -> None:
    cache = JwksCache(max_issuers=2)
    body = _jwks(_public(rsa_key(0, {"kid": "k"})))
    for n in range(3):
        cache.accept(f"https://op{n}.example", f"https://op{n}.example/jwks", body, NOW)
    assert cache.keys("https://op0.example") == ()
    assert len(cache.keys("https://op2.example")) == 1
