"""Signed client authentication against Authlib's provider: private_key_jwt and client_secret_jwt.

The spec is the example one with its requests' ``client_auth`` changed (a spec that extends
it). The provider accepts only the method under test, checks each assertion's signature,
audience and expiry, and refuses a ``jti`` it has seen (RFC 7523 §3): a login, refreshes, a
device flow and a revocation each succeed only with a fresh assertion. PKCE stays on.
"""

from __future__ import annotations

import json
from pathlib import Path

import flowengine as fe
import pytest
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from tests.oidc.engine import SPEC, engine, login
from tests.support.keys import rsa_key
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, OidcProvider

_REQUESTS = ("authorization_code", "refresh_token", "device_code")


def _spec(tmp_path: Path, method: str) -> Path:
    """The example spec with every request authenticated by ``method``."""
    grants = "\n".join(f"  {name}: {{client_auth: {method}}}" for name in _REQUESTS)
    path = tmp_path / f"authlib-{method}.yaml"
    path.write_text(
        f"extends: {SPEC}\ngrants:\n{grants}\n"
        f"device: {{client_auth: {method}}}\nrevocation: {{client_auth: {method}}}\n",
        encoding="utf-8",
    )
    return path


def _assertions(provider: OidcProvider) -> list[dict[str, object]]:
    claims = []
    for received in provider.received():
        if received.path == "/userinfo":
            continue  # the access token authenticates there
        assert received.auth == "assertion", received
        raw = received.form["client_assertion"]
        claims.append(json.loads(jws.extract_compact(raw.encode()).payload))
        assert "client_secret" not in received.form
    return claims


async def _every_request(eng: fe.AsyncEngine, provider: OidcProvider) -> None:
    """A login, two refreshes, a device flow and a revocation: six assertions, each fresh."""
    done = await login(eng, provider)
    assert done.outcome == "granted", done.error
    token = await eng.token_for(done)
    assert token is not None
    for _ in range(2):
        eng.clock.advance(1)  # type: ignore[attr-defined]  # (the provider checks iat on its own clock)
        token = await eng.refresh(token)
    flow = await eng.start_device(connection={"issuer": provider.issuer})
    assert flow.device is not None
    provider.decide_device(flow.device.user_code)
    assert (await eng.poll_device(flow)).outcome == "granted"
    await eng.revoke(token)


def _check(claims: list[dict[str, object]], provider: OidcProvider) -> None:
    assert len(claims) == 6
    assert len({c["jti"] for c in claims}) == 6  # a fresh jti every time
    for c in claims:
        assert (c["iss"], c["sub"], c["aud"]) == (CLIENT_ID, CLIENT_ID, provider.token_endpoint)
        assert c["exp"] - c["iat"] == 60  # type: ignore[operator]


@pytest.mark.parametrize("kind", ["RSA", "EC"])
async def test_private_key_jwt_from_a_key_file(provider: OidcProvider, tmp_path: Path, kind: str) -> None:
    key = rsa_key(0) if kind == "RSA" else ECKey.generate_key("P-256")
    provider.register_client_key(key.as_dict(private=False))
    provider.only_auth_methods("private_key_jwt")
    key_file = tmp_path / "client-key.pem"
    key_file.write_bytes(key.as_pem(private=True))
    client = fe.Client(CLIENT_ID, None, REDIRECT_URI, private_key=key_file)
    async with engine(spec=_spec(tmp_path, "private_key_jwt"), client=client) as eng:
        await _every_request(eng, provider)
    _check(_assertions(provider), provider)
    # PKCE is kept on: the code went with its verifier.
    exchange = next(r for r in provider.received("/token") if r.form["grant_type"] == "authorization_code")
    assert exchange.form["code_verifier"]


async def test_private_key_jwt_with_a_key_given_at_run_time(provider: OidcProvider, tmp_path: Path) -> None:
    key = rsa_key(0, {"kid": "run-time-key"})
    provider.register_client_key(key.as_dict(private=False))
    provider.only_auth_methods("private_key_jwt")
    client = fe.Client(CLIENT_ID, None, REDIRECT_URI, private_key=key.as_dict(private=True))
    async with engine(spec=_spec(tmp_path, "private_key_jwt"), client=client) as eng:
        assert (await login(eng, provider)).outcome == "granted"
    [received] = provider.received("/token")
    assert jws.extract_compact(received.form["client_assertion"].encode()).headers()["kid"] == "run-time-key"


async def test_client_secret_jwt(provider: OidcProvider, tmp_path: Path) -> None:
    provider.only_auth_methods("client_secret_jwt")
    client = fe.Client(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
    async with engine(spec=_spec(tmp_path, "client_secret_jwt"), client=client) as eng:
        await _every_request(eng, provider)
    claims = _assertions(provider)
    _check(claims, provider)


async def test_the_provider_refuses_a_key_it_does_not_know(provider: OidcProvider, tmp_path: Path) -> None:
    provider.register_client_key(rsa_key(0).as_dict(private=False))
    provider.only_auth_methods("private_key_jwt")
    stranger = rsa_key(1).as_dict(private=True)
    client = fe.Client(CLIENT_ID, None, REDIRECT_URI, private_key=stranger)
    async with engine(spec=_spec(tmp_path, "private_key_jwt"), client=client) as eng:
        done = await login(eng, provider)
        assert (done.outcome, done.error.code if done.error else None) == ("failed", "invalid_client")
        assert await eng.tokens() == []


async def test_a_spec_asking_for_private_key_jwt_without_a_key_sends_nothing(
    provider: OidcProvider, tmp_path: Path
) -> None:
    client = fe.Client(CLIENT_ID, None, REDIRECT_URI)
    async with engine(spec=_spec(tmp_path, "private_key_jwt"), client=client) as eng:
        with pytest.raises(fe.ConfigError) as info:
            await login(eng, provider)
        assert info.value.code == "client_key_invalid"
        assert await eng.tokens() == []
    assert provider.received("/token") == []


def test_a_bad_key_is_refused_when_the_engine_starts(tmp_path: Path) -> None:
    weak = tmp_path / "weak.pem"
    with pytest.warns(UserWarning, match="2048"):  # joserfc rightly warns: that is the point
        weak.write_bytes(RSAKey.generate_key(1024, auto_kid=False).as_pem(private=True))
    for key in (weak, tmp_path / "missing.pem", "not a key"):
        with pytest.raises(fe.ConfigError) as info:
            fe.AsyncEngine(SPEC, client=fe.Client(CLIENT_ID, None, REDIRECT_URI, private_key=key))
        assert info.value.code == "client_key_invalid"
    assert "BEGIN" not in repr(fe.Client(CLIENT_ID, private_key="-----BEGIN PRIVATE KEY-----"))


def test_the_spec_keeps_the_secret_out_of_the_body_of_a_signed_request(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    path.write_text(
        f"extends: {SPEC}\ngrants:\n  refresh_token:\n    client_auth: private_key_jwt\n"
        '    params: {client_secret: "{client_secret}"}\n',
        encoding="utf-8",
    )
    with pytest.raises(fe.SpecError) as info:
        fe.load_spec(path)
    assert any("client_auth is private_key_jwt" in p.message for p in info.value.problems)
