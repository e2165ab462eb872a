"""The test provider's switches do what the engine's tests will rely on: the device grant approved,
denied, expired and slowed down (RFC 8628 §3.5), keys rotated, the discovery document changed.

These prove the peer, not flowengine: each answer here is Authlib's.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import flowengine as fe
import pytest
from flowengine._jwks import read_jwks
from flowengine._oidc import IdTokenRules, validate_id_token

from tests.support.oidc_provider import DEVICE_GRANT, PUBLIC_CLIENT_ID, USER, OidcProvider


async def _post(transport: fe.Transport, url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
    response = await transport.send(fe.HttpRequest("POST", url, headers, urlencode(form).encode()))
    return response.status, json.loads(response.body)


async def _start_device(provider: OidcProvider, transport: fe.Transport) -> dict[str, Any]:
    status, answer = await _post(
        transport,
        f"{provider.issuer}/device_authorization",
        {"client_id": PUBLIC_CLIENT_ID, "scope": "openid profile"},
    )
    assert status == 200, answer
    return answer


async def _poll(
    provider: OidcProvider, transport: fe.Transport, device_code: str
) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": PUBLIC_CLIENT_ID}
    return await _post(transport, provider.token_endpoint, form)


async def test_the_device_authorization_answer_follows_the_settings(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.device_settings(interval=2, expires_in=90)
    answer = await _start_device(provider, transport)
    assert (answer["interval"], answer["expires_in"]) == (2, 90)
    assert answer["verification_uri"] == f"{provider.issuer}/device"
    assert answer["verification_uri_complete"].endswith(f"user_code={answer['user_code']}")


async def test_an_approved_device_gets_a_token_with_a_valid_id_token(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    answer = await _start_device(provider, transport)
    assert await _poll(provider, transport, answer["device_code"]) == (
        400,
        {"error": "authorization_pending"},
    )
    provider.decide_device(answer["user_code"], approve=True)
    status, token = await _poll(provider, transport, answer["device_code"])
    assert status == 200 and token["token_type"].lower() == "bearer"
    keys = read_jwks(await transport.send(fe.HttpRequest("GET", provider.jwks_uri)))
    rules = IdTokenRules(issuer=provider.issuer, client_id=PUBLIC_CLIENT_ID)
    id_token = validate_id_token(
        token["id_token"], keys, rules, now=time.time(), access_token=token["access_token"]
    )
    assert id_token.subject == USER.sub
    status, spent = await _poll(provider, transport, answer["device_code"])  # a device code buys one token
    assert (status, spent["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("act", "error"),
    [("deny", "access_denied"), ("expire", "expired_token"), ("slow_down", "slow_down")],
)
async def test_a_device_poll_answers_each_rfc8628_error(
    provider: OidcProvider, transport: fe.Transport, act: str, error: str
) -> None:
    answer = await _start_device(provider, transport)
    if act == "deny":
        provider.decide_device(answer["user_code"], approve=False)
    elif act == "expire":
        provider.expire_device(answer["user_code"])
    else:
        provider.slow_down_next()
    status, body = await _poll(provider, transport, answer["device_code"])
    assert (status, body["error"]) == (400, error)
    if act == "slow_down":  # only the next poll was slowed down
        assert (await _poll(provider, transport, answer["device_code"]))[1][
            "error"
        ] == "authorization_pending"


async def test_rotation_publishes_new_kids_and_drops_or_keeps_the_old(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    async def kids() -> set[str | None]:
        return {k.kid for k in read_jwks(await transport.send(fe.HttpRequest("GET", provider.jwks_uri)))}

    before = await kids()
    kept = provider.rotate_keys(keep_old=True)
    assert await kids() == before | set(kept)
    dropped = provider.rotate_keys()
    assert await kids() == set(dropped)


async def test_discovery_and_jwks_headers_are_what_the_test_asks(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.discovery(headers={"Cache-Control": "max-age=42"}, userinfo_endpoint=None)
    provider.jwks_headers({"Expires": "0"})
    metadata = await transport.send(
        fe.HttpRequest("GET", f"{provider.issuer}/.well-known/openid-configuration")
    )
    assert metadata.headers["cache-control"] == "max-age=42"
    assert "userinfo_endpoint" not in json.loads(metadata.body)
    assert (await transport.send(fe.HttpRequest("GET", provider.jwks_uri))).headers["expires"] == "0"
