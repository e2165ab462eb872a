"""Authlib's userinfo endpoint, answering JSON or a signed JWT; its ``sub`` must be the ID token's."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import flowengine as fe
import pytest
from flowengine._jwks import JwksCache
from flowengine._oidc_errors import UserinfoError, refuse_userinfo
from flowengine._oidc_userinfo import Userinfo, read_userinfo, userinfo_jws, userinfo_request
from joserfc import jwt
from joserfc.jwk import OctKey

from tests.oidc.helpers import keys_for
from tests.support import oidc_tokens
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, USER, OidcProvider

NOW = 1_800_000_000.0


async def _access_token(provider: OidcProvider, transport: fe.Transport) -> str:
    grant = provider.authorize(nonce="n", scope="openid profile email")
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    request = fe.HttpRequest(
        "POST",
        provider.token_endpoint,
        {"content-type": "application/x-www-form-urlencoded", "authorization": f"Basic {basic}"},
        urlencode(grant.token_form()).encode(),
    )
    answer: dict[str, Any] = json.loads((await transport.send(request)).body)
    return str(answer["access_token"])


async def _userinfo(provider: OidcProvider, transport: fe.Transport, access_token: str) -> fe.HttpResponse:
    return await transport.send(userinfo_request(f"{provider.issuer}/userinfo", access_token))


async def _read(provider: OidcProvider, transport: fe.Transport, response: fe.HttpResponse) -> Userinfo:
    """What a driver does: a signed answer's keys through the cache, then the checks."""
    parsed = userinfo_jws(response)
    keys = ()
    if parsed is not None:
        keys = await keys_for(JwksCache(), transport, provider, parsed.header, NOW, refuse=refuse_userinfo)
    return read_userinfo(response, subject=USER.sub, issuer=provider.issuer, client_id=CLIENT_ID, keys=keys)


def test_the_request_carries_the_access_token_as_a_bearer_credential() -> None:
    request = userinfo_request("https://op.example/userinfo", "the-token")
    assert (request.method, request.url, request.body) == ("GET", "https://op.example/userinfo", b"")
    assert request.headers["authorization"] == "Bearer the-token"
    assert "application/jwt" in request.headers["accept"]
    assert "the-token" not in repr(request)


async def test_a_json_answer_about_the_same_person_is_read(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    info = await _read(
        provider, transport, await _userinfo(provider, transport, await _access_token(provider, transport))
    )
    assert (info.subject, info.signed, info.claims["email"]) == (USER.sub, False, USER.email)
    with pytest.raises(TypeError):
        info.claims["sub"] = "x"  # type: ignore[index]


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_signed_answer_is_verified_against_the_issuers_keys(
    provider: OidcProvider, transport: fe.Transport, alg: str
) -> None:
    provider.sign_userinfo(alg)
    response = await _userinfo(provider, transport, await _access_token(provider, transport))
    assert response.content_type == "application/jwt"
    info = await _read(provider, transport, response)
    assert (info.subject, info.signed, info.claims["iss"]) == (USER.sub, True, provider.issuer)


async def test_an_answer_about_someone_else_is_refused(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.userinfo_sub("someone-else")
    response = await _userinfo(provider, transport, await _access_token(provider, transport))
    with pytest.raises(UserinfoError) as error:
        await _read(provider, transport, response)
    assert error.value.code == "userinfo_sub_mismatch"


async def test_a_signed_answer_about_someone_else_is_refused_too(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.sign_userinfo("ES256")
    provider.userinfo_sub("someone-else")
    response = await _userinfo(provider, transport, await _access_token(provider, transport))
    with pytest.raises(UserinfoError) as error:
        await _read(provider, transport, response)
    assert error.value.code == "userinfo_sub_mismatch"


async def test_an_unknown_access_token_is_unauthorized(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    response = await _userinfo(provider, transport, "not-a-token-the-provider-issued")
    with pytest.raises(UserinfoError) as error:
        await _read(provider, transport, response)
    assert (error.value.code, error.value.status) == ("userinfo_unauthorized", 401)


def _jwt_answer(raw: str) -> fe.HttpResponse:
    return fe.HttpResponse(200, {"content-type": "application/jwt"}, raw.encode())


async def test_signed_answers_are_checked_like_id_tokens(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    claims = {"iss": provider.issuer, "aud": CLIENT_ID, "sub": USER.sub}
    cases = {
        "userinfo_wrong_issuer": oidc_tokens.sign(
            provider.state, {**claims, "iss": "https://op.example"}, "RS256"
        ),
        "userinfo_wrong_audience": oidc_tokens.sign(provider.state, {**claims, "aud": "other"}, "RS256"),
        "userinfo_alg_not_allowed": jwt.encode({"alg": "HS256"}, claims, OctKey.generate_key(256)),
        "userinfo_malformed": "a.b",
    }
    parsed = userinfo_jws(_jwt_answer(cases["userinfo_wrong_issuer"]))
    assert parsed is not None
    keys = await keys_for(JwksCache(), transport, provider, parsed.header, NOW, refuse=refuse_userinfo)
    for code, raw in cases.items():
        with pytest.raises(UserinfoError) as error:
            read_userinfo(
                _jwt_answer(raw), subject=USER.sub, issuer=provider.issuer, client_id=CLIENT_ID, keys=keys
            )
        assert error.value.code == code


@pytest.mark.parametrize(
    ("response", "code", "retryable"),
    [
        (fe.HttpResponse(403, {}, b""), "userinfo_unauthorized", False),
        (fe.HttpResponse(503, {}, b""), "userinfo_unavailable", True),
        (fe.HttpResponse(429, {}, b""), "userinfo_unavailable", True),
        (fe.HttpResponse(400, {}, b""), "userinfo_invalid", False),
        (fe.HttpResponse(200, {"content-type": "text/html"}, b"<html>"), "userinfo_invalid", False),
        (fe.HttpResponse(200, {}, b"[1]"), "userinfo_invalid", False),
        (fe.HttpResponse(200, {}, b'{"name": "no sub"}'), "userinfo_invalid", False),
        (fe.HttpResponse(200, {}, b'{"sub": 42}'), "userinfo_invalid", False),
        (
            fe.HttpResponse(200, {}, b'{"sub": "s", "x": ' + b"[" * 50 + b"]" * 50 + b"}"),
            "userinfo_invalid",
            False,
        ),
        (fe.HttpResponse(200, {"content-type": "application/jwt"}, b"\xff\xfe"), "userinfo_malformed", False),
    ],
    ids=["403", "503", "429", "400", "html", "array", "no-sub", "sub-int", "deep", "jwt-bytes"],
)
def test_unusable_answers_are_typed_refusals(response: fe.HttpResponse, code: str, retryable: bool) -> None:
    with pytest.raises(UserinfoError) as error:
        read_userinfo(response, subject="s", issuer="https://op.example", client_id=CLIENT_ID)
    assert (error.value.code, error.value.retryable) == (code, retryable)
