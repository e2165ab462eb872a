"""flowengine.auth against the sandbox: one behaviour through every HTTP library it serves.

Each test runs once per client kind (httpx async and sync, aiohttp, requests, and
httpx async on the sync Engine). Requests that reached the wire are counted by the
harness; refresh requests by the sandbox's token-request record.
"""

from __future__ import annotations

import logging

import flowengine as fe
import pytest

from flowengine_sandbox.faults import Fault
from tests.auth.conftest import ACCESS_TTL, REFRESH_TTL, AuthClient, Clocks, refreshes
from tests.conftest import SandboxFixture

#: The engine's leeway on expires_at (SECURITY.md 22) plus flowengine.auth's default margin.
LEEWAY, MARGIN = 60, 60


async def test_the_call_to_user_status_carries_the_spec_header(
    client: AuthClient, sandbox: SandboxFixture
) -> None:
    reply = await client.call()

    assert reply.status == 200
    assert reply.json["ref"] == {"type": "user", "id": 1001}
    [header] = client.sent
    assert header is not None and header.startswith("OAuth2 ")  # podio.yaml's usage.header_scheme
    assert refreshes(sandbox) == 0


async def test_a_token_within_the_margin_is_refreshed_before_it_is_sent(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    assert (await client.call()).status == 200
    # The provider would still take the old token for another MARGIN/2 + LEEWAY seconds.
    clocks.advance(ACCESS_TTL - LEEWAY - MARGIN // 2)

    assert (await client.call()).status == 200

    assert refreshes(sandbox) == 1
    assert len(client.sent) == 2 and client.sent[1] != client.sent[0]


async def test_expiry_during_a_burst_of_100_requests_refreshes_once(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    assert (await client.call()).status == 200
    clocks.advance(ACCESS_TTL)  # expired by both clocks

    replies = await client.burst(100)

    assert [reply.status for reply in replies] == [200] * 100
    assert refreshes(sandbox) == 1
    burst = client.sent[1:]
    # Refreshed ahead: no request went out with the expired token, none was retried.
    assert len(burst) == 100
    assert set(burst) == {burst[0]} and burst[0] != client.sent[0]


async def test_a_401_mid_stream_refreshes_once_and_retries_once(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    for _ in range(3):
        assert (await client.call()).status == 200
    # The provider ends the token before the engine's clock says it should.
    clocks.engine.now += 10
    clocks.provider.now += ACCESS_TTL

    reply = await client.call()

    assert reply.status == 200 and reply.json["ref"]["id"] == 1001
    assert refreshes(sandbox) == 1
    old = client.sent[0]
    assert client.sent[:4] == [old] * 4  # the fourth call went with the old token, got 401
    assert client.sent[4] != old  # and was sent once more, with the new one
    assert (await client.call()).status == 200  # the new token is kept: one send, no refresh
    assert client.sent[5:] == [client.sent[4]]
    assert refreshes(sandbox) == 1


async def test_401s_across_a_concurrent_burst_refresh_once(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    assert (await client.call()).status == 200
    clocks.engine.now += 10
    clocks.provider.now += ACCESS_TTL

    replies = await client.burst(20)

    assert [reply.status for reply in replies] == [200] * 20
    assert refreshes(sandbox) == 1
    old = client.sent[0]
    refused = client.sent[1:].count(old)  # each of these was refused and retried once
    assert 1 <= refused <= 20
    assert len(client.sent) == 1 + 20 + refused


async def test_a_request_is_retried_once_never_twice(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    challenge = 'Bearer realm="podio", error="invalid_token"'
    sandbox.settings.faults.add(
        Fault("respond", paths=("/user/status",), status=401, headers={"WWW-Authenticate": challenge})
    )
    clocks.engine.now += 10

    reply = await client.call()

    assert reply.status == 401  # the retry's answer, handed back
    assert len(client.sent) == 2 and client.sent[0] != client.sent[1]
    assert refreshes(sandbox) == 1


async def test_a_dead_grant_found_by_a_401_is_a_typed_error_and_no_loop(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    # Both tokens have ended at the provider; the engine's clock does not know yet.
    clocks.engine.now += 10
    clocks.provider.now += REFRESH_TTL + 1

    for calls in (1, 2, 3):
        with pytest.raises(fe.ProviderError) as raised:
            await client.call()
        assert raised.value.code == "invalid_grant"
        # One request per call, refused; one refresh in all: then the engine knows the grant is dead.
        assert len(client.sent) == calls
        assert refreshes(sandbox) == 1


async def test_a_dead_grant_found_ahead_of_expiry_sends_nothing(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    clocks.advance(REFRESH_TTL + 1)

    for _ in range(3):
        with pytest.raises(fe.ProviderError) as raised:
            await client.call()
        assert raised.value.code == "invalid_grant"
    assert client.sent == []
    assert refreshes(sandbox) == 1


async def test_a_streamed_body_is_sent_once_and_its_401_returned(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    clocks.engine.now += 10
    clocks.provider.now += ACCESS_TTL

    reply = await client.call(body="stream")

    assert reply.status == 401
    assert len(client.sent) == 1
    # The token was refreshed all the same: the caller's next request goes with the new one.
    assert refreshes(sandbox) == 1
    assert (await client.call(body="stream")).status == 200
    assert len(client.sent) == 2 and client.sent[1] != client.sent[0]
    assert refreshes(sandbox) == 1


async def test_a_body_held_in_memory_is_retried(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    clocks.engine.now += 10
    clocks.provider.now += ACCESS_TTL

    reply = await client.call(body="bytes")

    assert reply.status == 200
    assert len(client.sent) == 2
    assert refreshes(sandbox) == 1


async def test_a_request_with_its_own_authorization_is_left_alone(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    clocks.advance(ACCESS_TTL)  # the engine's token is due: it is neither refreshed nor sent

    reply = await client.call(headers={"Authorization": "OAuth2 not-a-token"})

    assert reply.status == 401
    assert client.sent == ["OAuth2 not-a-token"]
    assert refreshes(sandbox) == 0


async def test_sec13_debug_logs_name_tokens_only_by_fingerprint(
    client: AuthClient, sandbox: SandboxFixture, clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clocks.engine.now += 10
    clocks.provider.now += ACCESS_TTL
    assert (await client.call()).status == 200  # refused, refreshed, retried
    clocks.advance(ACCESS_TTL)
    assert (await client.call()).status == 200  # refreshed ahead

    tokens = await _stored(client)
    secrets = [header.partition(" ")[2] for header in client.sent if header] + [tokens.refresh_token or ""]
    assert len(set(secrets)) == 4  # the first, second and third access tokens, a refresh token
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    for secret in secrets:
        assert secret not in logged
    first, second = secrets[0], secrets[1]  # sent: the first, the second (the retry), the third
    for refreshed in (first, second):  # the auth says what it refreshed, by fingerprint
        assert fe.fingerprint(refreshed) in logged


async def _stored(client: AuthClient) -> fe.Token:
    engine = client.engine
    key = "podio:user:1001"
    token = await engine.get_token(key) if isinstance(engine, fe.AsyncEngine) else engine.get_token(key)
    assert token is not None
    return token
