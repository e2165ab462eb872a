"""Discovery in the engine: the metadata fetched once, kept as its headers say, checked, and the
endpoints a spec writes winning over the discovered ones.
"""

from __future__ import annotations

from pathlib import Path

import flowengine as fe
import pytest

from tests.oidc.engine import SPEC, connection, engine, login
from tests.support.oidc_provider import OidcProvider


def _fetches(provider: OidcProvider) -> int:
    with provider.state.lock:
        return provider.state.discovery_fetches


async def test_the_metadata_is_fetched_once_and_kept_while_its_headers_allow(provider: OidcProvider) -> None:
    provider.discovery(headers={"Cache-Control": "max-age=300"})
    async with engine() as eng:
        for _ in range(3):
            assert (await login(eng, provider)).outcome == "granted"
        assert _fetches(provider) == 1
        eng.clock.advance(301)  # type: ignore[attr-defined]
        assert (await login(eng, provider)).outcome == "granted"
        assert _fetches(provider) == 2


async def test_no_store_metadata_is_fetched_for_every_flow(provider: OidcProvider) -> None:
    provider.discovery(headers={"Cache-Control": "no-store"})
    async with engine() as eng:
        await eng.start(connection=connection(provider))
        await eng.start(connection=connection(provider))
    assert _fetches(provider) == 2


async def test_metadata_naming_another_issuer_is_refused_before_anything_is_sent(
    provider: OidcProvider,
) -> None:
    provider.discovery(issuer="https://impostor.example")
    async with engine() as eng:
        with pytest.raises(fe.DiscoveryError) as info:
            await eng.start(connection=connection(provider))
        assert info.value.code == "discovery_issuer_mismatch"
        assert await eng.flows() == []


async def test_metadata_without_an_endpoint_the_spec_uses_is_refused(provider: OidcProvider) -> None:
    provider.discovery(device_authorization_endpoint=None)
    async with engine() as eng:
        with pytest.raises(fe.DiscoveryError) as info:
            await eng.start_device(connection=connection(provider))
    assert info.value.code == "discovery_endpoint_missing"


async def test_an_http_endpoint_off_loopback_in_the_metadata_is_refused(provider: OidcProvider) -> None:
    provider.discovery(token_endpoint="http://evil.example/token")
    async with engine() as eng:
        with pytest.raises(fe.DiscoveryError) as info:
            await eng.start(connection=connection(provider))
    assert info.value.code == "discovery_insecure_url"


async def test_endpoints_the_spec_writes_win_over_discovered_ones(
    provider: OidcProvider, tmp_path: Path
) -> None:
    path = tmp_path / "written.yaml"
    path.write_text(
        f"extends: {SPEC}\nlocal_only: true\nendpoints:\n  authorize: http://127.0.0.1:9/written/authorize\n",
        encoding="utf-8",
    )
    async with engine(spec=path) as eng:
        flow = await eng.start(connection=connection(provider))
    assert (flow.authorization_url or "").startswith("http://127.0.0.1:9/written/authorize?")


async def test_endpoints_given_to_the_engine_win_too_and_then_nothing_is_fetched(
    provider: OidcProvider,
) -> None:
    every = {n: f"{provider.issuer}/{p}" for n, p in {
        "authorize": "authorize", "token": "token", "userinfo": "userinfo",
        "revoke": "revoke", "jwks": "jwks", "device": "device_authorization",
    }.items()}  # fmt: skip
    async with fe.AsyncEngine(SPEC, client=engine().client, endpoints=every, clock=engine().clock) as eng:
        assert (await login(eng, provider)).outcome == "granted"
    assert _fetches(provider) == 0


async def test_the_issuer_given_is_judged(provider: OidcProvider) -> None:
    async with engine() as eng:
        with pytest.raises(fe.ConfigError) as info:
            await eng.start(connection={"issuer": "http://idp.example.com"})
    assert info.value.code == "issuer_invalid"  # http is for loopback only


async def test_discovery_narrows_the_id_token_algorithms(provider: OidcProvider) -> None:
    provider.discovery(id_token_signing_alg_values_supported=["ES256"])
    provider.sign_with("RS256")  # signs with what it said it would not
    async with engine() as eng:
        done = await login(eng, provider)
    assert done.error is not None and done.error.code == "id_token_alg_not_allowed"
