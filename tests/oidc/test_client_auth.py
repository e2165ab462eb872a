"""Signed client authentication (RFC 7523, OIDC Core §9), accepted by Authlib's token endpoint.

The provider is told to accept only the method under test, so a 200 proves the assertion was
what authenticated the client; Authlib's own ``jti`` rule proves a replay is refused.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import flowengine as fe
import pytest
from flowengine._client_auth import ASSERTION_TYPE, client_secret_jwt, load_client_key, private_key_jwt
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from tests.support.keys import rsa_key
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider

NOW = 1_800_000_000.0


async def _redeem(provider: OidcProvider, transport: fe.Transport, auth: dict[str, str]) -> fe.HttpResponse:
    grant = provider.authorize(nonce=secrets.token_urlsafe(16))
    body = urlencode({**grant.token_form(), **auth}).encode()
    request = fe.HttpRequest(
        "POST", provider.token_endpoint, {"content-type": "application/x-www-form-urlencoded"}, body
    )
    return await transport.send(request)


def _jti() -> str:
    """A fresh assertion id, as the engine's driver draws one for each assertion."""
    return secrets.token_urlsafe(32)


def _now() -> float:
    return time.time()  # Authlib checks exp against its own clock


async def test_client_secret_jwt_authenticates_at_authlibs_token_endpoint(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.only_auth_methods("client_secret_jwt")
    auth = client_secret_jwt(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint=provider.token_endpoint,
        now=_now(),
        jti=_jti(),
    )
    response = await _redeem(provider, transport, auth)
    assert response.status == 200, response.body
    assert [r.auth for r in provider.received("/token")] == ["assertion"]
    assert "client_secret" not in provider.received("/token")[0].form


async def test_a_replayed_assertion_is_refused_and_each_one_is_fresh(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.only_auth_methods("client_secret_jwt")
    kw: dict[str, Any] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    auth = client_secret_jwt(**kw, token_endpoint=provider.token_endpoint, now=_now(), jti=_jti())
    assert (await _redeem(provider, transport, auth)).status == 200
    replay = await _redeem(provider, transport, auth)
    assert (replay.status, json.loads(replay.body)["error"]) == (400, "invalid_client")  # no Basic: 400
    fresh = client_secret_jwt(**kw, token_endpoint=provider.token_endpoint, now=_now(), jti=_jti())
    assert fresh["client_assertion"] != auth["client_assertion"]
    assert (await _redeem(provider, transport, fresh)).status == 200


@pytest.mark.parametrize("kind", ["rsa-pem", "rsa-jwk", "ec-jwk-text", "ec-pem-encrypted"])
async def test_private_key_jwt_authenticates_at_authlibs_token_endpoint(
    provider: OidcProvider, transport: fe.Transport, kind: str
) -> None:
    provider.only_auth_methods("private_key_jwt")
    if kind.startswith("rsa"):
        key: RSAKey | ECKey = rsa_key(0, {"kid": "client-rsa"})
    else:
        key = ECKey.generate_key("P-256", {"kid": "client-ec"})
    provider.register_client_key(key.as_dict(private=False))
    material: Any = {
        "rsa-pem": key.as_pem(private=True),
        "rsa-jwk": key.as_dict(private=True),
        "ec-jwk-text": json.dumps(key.as_dict(private=True)),
        "ec-pem-encrypted": key.as_pem(private=True, password="pw"),
    }[kind]
    client_key = load_client_key(
        material, kid=str(key.kid) if "pem" in kind else None, password="pw" if "encrypted" in kind else None
    )
    auth = private_key_jwt(
        client_id=CLIENT_ID, key=client_key, token_endpoint=provider.token_endpoint, now=_now(), jti=_jti()
    )
    response = await _redeem(provider, transport, auth)
    assert response.status == 200, response.body
    assert provider.received("/token")[0].auth == "assertion"


async def test_an_assertion_signed_by_an_unregistered_key_is_refused(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.only_auth_methods("private_key_jwt")
    provider.register_client_key(rsa_key(0, {"kid": "k"}).as_dict(private=False))
    impostor = load_client_key(rsa_key(1).as_dict(private=True), kid="k")
    auth = private_key_jwt(
        client_id=CLIENT_ID, key=impostor, token_endpoint=provider.token_endpoint, now=_now(), jti=_jti()
    )
    answer = await _redeem(provider, transport, auth)
    assert (answer.status, json.loads(answer.body)["error"]) == (400, "invalid_client")


def test_the_assertion_says_who_for_whom_and_how_long() -> None:
    key = load_client_key(ECKey.generate_key("P-384").as_dict(private=True))
    form = private_key_jwt(
        client_id="c1", key=key, token_endpoint="https://op.example/token", now=NOW, jti="assertion-1"
    )
    assert (
        form["client_assertion_type"]
        == ASSERTION_TYPE
        == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    token = jwt.decode(form["client_assertion"], key.key, algorithms=["ES384"])
    assert token.header == {"typ": "JWT", "alg": "ES384", "kid": key.kid} and key.kid == key.key.thumbprint()
    claims = token.claims
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("c1", "c1", "https://op.example/token")
    assert (claims["iat"], claims["exp"], claims["jti"]) == (NOW, NOW + 60, "assertion-1")
    custom = private_key_jwt(
        client_id="c1",
        key=key,
        token_endpoint="https://op.example/token",
        now=NOW,
        lifetime=30,
        audience="https://op.example",
        jti="assertion-2",
    )
    claims = jwt.decode(custom["client_assertion"], key.key, algorithms=["ES384"]).claims
    assert (claims["aud"], claims["exp"]) == ("https://op.example", NOW + 30)


def test_client_secret_jwt_is_an_hmac_of_the_secret() -> None:
    secret = "s" * 64
    for alg in ("HS256", "HS384", "HS512"):
        form = client_secret_jwt(
            client_id="c",
            client_secret=secret,
            token_endpoint="https://op.example/t",
            now=NOW,
            alg=alg,
            jti="j",
        )
        token = jwt.decode(form["client_assertion"], OctKey.import_key(secret), algorithms=[alg])
        assert (token.header["alg"], token.claims["sub"]) == (alg, "c")


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda: client_secret_jwt(
                client_id="c", client_secret="short", token_endpoint="https://o.example/t", now=NOW, jti="j"
            ),
            "client_secret_too_short",
        ),
        (
            lambda: client_secret_jwt(
                client_id="c",
                client_secret="s" * 40,
                token_endpoint="https://o.example/t",
                now=NOW,
                jti="j",
                alg="HS384",
            ),
            "client_secret_too_short",
        ),
        (
            lambda: client_secret_jwt(
                client_id="c",
                client_secret="s" * 40,
                token_endpoint="https://o.example/t",
                now=NOW,
                jti="j",
                alg="RS256",
            ),
            "client_auth_invalid",
        ),
        (
            lambda: client_secret_jwt(
                client_id="c", client_secret="s" * 40, token_endpoint="http://o.example/t", now=NOW, jti="j"
            ),
            "client_auth_invalid",
        ),
        (
            lambda: client_secret_jwt(
                client_id="", client_secret="s" * 40, token_endpoint="https://o.example/t", now=NOW, jti="j"
            ),
            "client_auth_invalid",
        ),
        (
            lambda: client_secret_jwt(
                client_id="c",
                client_secret="s" * 40,
                token_endpoint="https://o.example/t",
                now=NOW,
                jti="j",
                lifetime=301,
            ),
            "client_auth_invalid",
        ),
        (
            lambda: client_secret_jwt(
                client_id="c",
                client_secret="s" * 40,
                token_endpoint="https://o.example/t",
                now=NOW,
                jti="j",
                lifetime=0,
            ),
            "client_auth_invalid",
        ),
    ],
    ids=["short", "short-for-hs384", "not-hmac", "http-audience", "no-client", "long-lived", "zero-lifetime"],
)
def test_unsafe_settings_are_refused(call: Any, code: str) -> None:
    with pytest.raises(fe.ConfigError) as error:
        call()
    assert error.value.code == code


@pytest.mark.parametrize(
    ("material", "options"),
    [
        (rsa_key().as_pem(private=False), {}),  # a public key signs nothing
        (rsa_key().as_dict(private=False), {}),
        (rsa_key().as_pem(private=True), {"alg": "ES256"}),  # an alg the key cannot sign
        (ECKey.generate_key("P-256").as_dict(private=True), {"alg": "ES384"}),  # the wrong curve
        (rsa_key().as_pem(private=True), {"alg": "HS256"}),
        (rsa_key().as_pem(private=True, password="pw"), {"password": "wrong"}),
        (OctKey.generate_key(256).as_dict(private=True), {}),
        ({"keys": [rsa_key().as_dict(private=True)]}, {}),
        ("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----", {}),
        ('{"kty": "RSA"', {}),
        ("[1]", {}),
    ],
    ids=[
        "public-pem",
        "public-jwk",
        "rsa-as-es",
        "wrong-curve",
        "rsa-as-hs",
        "wrong-password",
        "oct",
        "set",
        "garbage-pem",
        "bad-json",
        "array",
    ],
)
def test_keys_that_cannot_sign_the_assertion_are_refused(material: Any, options: dict[str, Any]) -> None:
    with pytest.raises(fe.ConfigError) as error:
        load_client_key(material, **options)
    assert error.value.code == "client_key_invalid"


def test_a_small_rsa_key_is_refused() -> None:
    with pytest.warns(UserWarning, match="2048"):
        small = RSAKey.generate_key(1024)
    with pytest.raises(fe.ConfigError) as error:
        load_client_key(small.as_pem(private=True))
    assert error.value.code == "client_key_invalid"


def test_the_key_record_never_shows_the_key() -> None:
    key = load_client_key(rsa_key(0, {"kid": "mine", "alg": "PS256"}).as_dict(private=True))
    assert (key.alg, key.kid) == ("PS256", "mine")
    assert "PRIVATE" not in repr(key) and "key=" not in repr(key)
