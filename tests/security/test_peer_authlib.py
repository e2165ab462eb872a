"""The engine against an authorization server nobody on this project wrote (Authlib), described by
``specs/examples/authlib.yaml`` alone: granted, denied, a bad PKCE verifier, a reused code,
refresh with rotation, and RFC 7009 revocation.

The peer keeps its own record of the token and revocation requests it received; each refusal
below is proven from that record.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import attrs
import flowengine as fe
import httpx
import pytest
from flowengine._tokens import build_token_request

from tests.security import authlib_peer
from tests.security.authlib_peer import PeerServer
from tests.security.helpers import query_of
from tests.support.tls import tls

SPEC_FILE = Path(__file__).resolve().parents[2] / "specs" / "examples" / "authlib.yaml"
TOKEN, REVOKE = "/oauth/token", "/oauth/revoke"


def authlib_spec() -> fe.FlowSpec:
    """The example spec, exactly as written."""
    return fe.load_spec(SPEC_FILE)


@pytest.fixture(scope="module")
def _peer() -> Iterator[PeerServer]:
    yield from authlib_peer.serve()


@pytest.fixture
def peer(_peer: PeerServer) -> PeerServer:
    _peer.state.reset()
    return _peer


@pytest.fixture
async def engine(peer: PeerServer) -> AsyncIterator[fe.AsyncEngine]:
    client = fe.Client(authlib_peer.CLIENT_ID, authlib_peer.CLIENT_SECRET, authlib_peer.REDIRECT_URI)
    async with fe.AsyncEngine(
        authlib_spec(),
        client=client,
        endpoints=peer.endpoints,
        retry=fe.RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01),
    ) as engine:
        yield engine


async def _granted(engine: fe.AsyncEngine, peer: PeerServer) -> tuple[fe.Flow, fe.Token]:
    flow = await engine.start(scope="profile email")
    done = await engine.callback(await peer.consent(flow.authorization_url))
    assert done.state == "exchanged", done.error
    token = await engine.token_for(done)
    assert token is not None
    return done, token


async def _me(peer: PeerServer, token: fe.Token) -> int:
    async with httpx.AsyncClient(trust_env=False, verify=tls()) as http:
        answer = await http.get(f"{peer.url}/api/me", headers={"Authorization": token.authorization_header()})
    return answer.status_code


def test_sec11_the_authlib_spec_is_valid_as_written() -> None:
    spec = authlib_spec()
    assert (spec.name, spec.pkce, spec.issuer, spec.callback.iss_required) == (
        "authlib",
        True,
        authlib_peer.ISSUER,
        True,
    )
    assert spec.revocation is not None and spec.revocation.client_auth == "basic"
    assert spec.source == str(SPEC_FILE)


async def test_sec2_granted_with_s256_basic_auth_and_iss(engine: fe.AsyncEngine, peer: PeerServer) -> None:
    flow = await engine.start(scope="profile email")
    query = query_of(flow.authorization_url or "")
    assert query["code_challenge_method"] == "S256"
    callback = await peer.consent(flow.authorization_url)
    assert query_of(callback)["iss"] == authlib_peer.ISSUER  # RFC 9207, from Authlib
    done = await engine.callback(callback)
    assert done.state == "exchanged"
    assert done.granted_scope == "profile email"
    token = await engine.token_for(done)
    assert token is not None
    assert token.token_type == "Bearer" and token.refresh_token
    # Authlib's answer names no account: the token is the flow's, never the client's (SECURITY.md 32).
    assert token.account == fe.AccountRef("flow", done.id)
    assert await _me(peer, token) == 200
    [request] = peer.received(TOKEN)
    assert request.basic and "client_secret" not in request.form  # RFC 6749 §2.3.1, the secret encoded
    assert request.form["code_verifier"] == flow.code_verifier


def test_sec2_the_basic_credentials_survive_authlibs_decoding() -> None:
    """The secret has ':' '/' '%' '+': each half is form-encoded before Base64, as Authlib decodes it."""
    spec = authlib_spec()
    request = build_token_request(
        spec,
        "refresh_token",
        "http://127.0.0.1/oauth/token",
        {
            "client_id": authlib_peer.CLIENT_ID,
            "client_secret": authlib_peer.CLIENT_SECRET,
            "refresh_token": "r",
        },
    )
    user, _, password = base64.b64decode(request.headers["authorization"].split()[1]).decode().partition(":")
    assert (unquote(user), unquote(password)) == (authlib_peer.CLIENT_ID, authlib_peer.CLIENT_SECRET)


async def test_sec5_the_peers_iss_is_checked(peer: PeerServer) -> None:
    spec = attrs.evolve(authlib_spec(), issuer="https://another.example")
    client = fe.Client(authlib_peer.CLIENT_ID, authlib_peer.CLIENT_SECRET, authlib_peer.REDIRECT_URI)
    async with fe.AsyncEngine(spec, client=client, endpoints=peer.endpoints) as engine:
        flow = await engine.start()
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(await peer.consent(flow.authorization_url))
    assert caught.value.code == "issuer_mismatch"
    assert peer.received() == []


async def test_sec7_denied(engine: fe.AsyncEngine, peer: PeerServer) -> None:
    flow = await engine.start()
    callback = await peer.consent(flow.authorization_url, approve=False)
    assert query_of(callback)["iss"] == authlib_peer.ISSUER
    done = await engine.callback(callback)
    assert done.state == "denied"
    assert done.error is not None and done.error.code == "access_denied"
    assert peer.received() == []


async def test_sec2_a_code_injected_into_another_flow_fails_its_pkce_check(
    engine: fe.AsyncEngine, peer: PeerServer
) -> None:
    victim = await engine.start()
    stolen = query_of(await peer.consent(victim.authorization_url))
    attacker = await engine.start()
    injected = {**stolen, "state": query_of(attacker.authorization_url or "")["state"]}
    done = await engine.callback(injected)
    assert done.state == "failed"
    assert done.error is not None and done.error.code == "invalid_grant"
    assert "challenge" in (done.error.description or "").lower()
    assert await engine.tokens() == []
    [request] = peer.received(TOKEN)
    assert request.status == 400


async def test_sec3_a_reused_code_is_refused_by_the_peer(engine: fe.AsyncEngine, peer: PeerServer) -> None:
    first = await engine.start()
    callback = await peer.consent(first.authorization_url)
    assert (await engine.callback(callback)).state == "exchanged"
    assert (await engine.callback(callback)).state == "exchanged"  # a replay: nothing sent
    assert len(peer.received(TOKEN)) == 1
    second = await engine.start()
    # The same code under the second flow's state (and its own verifier): Authlib refuses.
    reused = {**query_of(callback), "state": query_of(second.authorization_url or "")["state"]}
    done = await engine.callback(reused)
    assert done.state == "failed"
    assert done.error is not None and done.error.code == "invalid_grant"
    assert [r.status for r in peer.received(TOKEN)] == [200, 400]


async def test_sec18_refresh_with_rotation_keeps_the_newest_refresh_token(
    engine: fe.AsyncEngine, peer: PeerServer
) -> None:
    _, token = await _granted(engine, peer)
    fresh = await engine.refresh(token)
    assert fresh.access_token != token.access_token
    assert fresh.refresh_token not in (None, token.refresh_token)
    assert await engine.get_token(token.key) == fresh
    assert await _me(peer, fresh) == 200
    again = await engine.refresh(fresh)  # the rotated-in refresh token works
    assert again.refresh_token != fresh.refresh_token
    # The rotated-out one is dead at the peer; the engine never sends it again.
    async with httpx.AsyncClient(trust_env=False, verify=tls()) as http:
        replay = await http.post(
            f"{peer.url}{TOKEN}",
            data={"grant_type": "refresh_token", "refresh_token": token.refresh_token},
            auth=(authlib_peer.CLIENT_ID, authlib_peer.CLIENT_SECRET),
        )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    sent = [
        r.form["refresh_token"] for r in peer.received(TOKEN) if r.form.get("grant_type") == "refresh_token"
    ]
    assert sent == [token.refresh_token, fresh.refresh_token, token.refresh_token]


async def test_sec18_a_refresh_token_the_peer_revoked_marks_the_grant_dead(
    engine: fe.AsyncEngine, peer: PeerServer
) -> None:
    _, token = await _granted(engine, peer)
    async with httpx.AsyncClient(trust_env=False, verify=tls()) as http:
        await http.post(
            f"{peer.url}{REVOKE}",
            data={"token": token.refresh_token, "token_type_hint": "refresh_token"},
            auth=(authlib_peer.CLIENT_ID, authlib_peer.CLIENT_SECRET),
        )
    with pytest.raises(fe.ProviderError) as caught:
        await engine.refresh(token)
    assert caught.value.code == "invalid_grant"
    stored = await engine.get_token(token.key)
    assert stored is not None and stored.dead


async def test_sec19_revocation_ends_the_grant_at_the_peer_and_forgets_the_token(
    engine: fe.AsyncEngine, peer: PeerServer
) -> None:
    _, token = await _granted(engine, peer)
    await engine.revoke(token)
    sent = [(r.form["token_type_hint"], r.form["token"], r.basic, r.status) for r in peer.received(REVOKE)]
    assert sent == [("refresh_token", token.refresh_token, True, 200)]
    assert await engine.get_token(token.key) is None
    assert await _me(peer, token) == 401  # RFC 7009 §2.1: the grant's access tokens go with it
    with pytest.raises(fe.FlowStateError):
        await engine.refresh(token.key)
    async with httpx.AsyncClient(trust_env=False, verify=tls()) as http:
        replay = await http.post(
            f"{peer.url}{TOKEN}",
            data={"grant_type": "refresh_token", "refresh_token": token.refresh_token},
            auth=(authlib_peer.CLIENT_ID, authlib_peer.CLIENT_SECRET),
        )
    assert replay.status_code == 400


async def test_sec19_revocation_retries_a_503_and_honours_retry_after(
    engine: fe.AsyncEngine, peer: PeerServer
) -> None:
    _, token = await _granted(engine, peer)
    asked: list[Any] = []

    class Spy(fe.RetryPolicy):
        def delay(self, attempt: int, retry_after: float | None) -> float:
            asked.append((attempt, retry_after))
            return 0.001

    engine.retry = Spy(attempts=3)
    peer.fail_next(REVOKE, 503, times=2, retry_after=2)
    await engine.revoke(token)
    assert [r.status for r in peer.received(REVOKE)] == [503, 503, 200]
    assert asked == [(0, 2.0), (1, 2.0)]
    assert await engine.get_token(token.key) is None


async def test_sec19_a_failed_revocation_keeps_the_token_for_a_retry(
    engine: fe.AsyncEngine, peer: PeerServer
) -> None:
    _, token = await _granted(engine, peer)
    peer.fail_next(REVOKE, 503, times=3)
    with pytest.raises(fe.ProviderError) as caught:
        await engine.revoke(token)
    assert caught.value.code == "provider_unavailable"
    assert await engine.get_token(token.key) == token
    await engine.revoke(token)
    assert await engine.get_token(token.key) is None


async def test_sec19_revoking_only_the_access_token_keeps_the_refresh_token_it_did_not_revoke(
    engine: fe.AsyncEngine, peer: PeerServer
) -> None:
    _, token = await _granted(engine, peer)
    await engine.revoke(token, hint="access_token")
    assert await _me(peer, token) == 401
    stored = await engine.get_token(token.key)
    assert stored is not None and stored.refresh_token == token.refresh_token
    assert (await engine.refresh(stored)).access_token != token.access_token
