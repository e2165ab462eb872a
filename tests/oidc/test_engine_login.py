"""The engine logs in at Authlib's OpenID provider, described only by specs/examples/authlib-oidc.yaml.

A valid ID token files the token under ``sub`` within ``iss``, with its claims on the flow and
the token. Every spoiled ID token the provider's token endpoint issues is refused with its own
code: the flow fails, and no token is stored anywhere (store, flow, process).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import flowengine as fe
import pytest
from flowengine._errors import ERROR_CLASSES

from tests.oidc.engine import connection, engine, login, nothing_stored
from tests.support.oidc_provider import CLIENT_ID, USER, OidcProvider, Sabotage

#: Each way the provider spoils the next ID token, and the code the engine refuses it with.
REFUSED = [
    (Sabotage.BAD_SIGNATURE, "id_token_invalid_signature"),
    (Sabotage.WRONG_AUDIENCE, "id_token_wrong_audience"),
    (Sabotage.EXPIRED, "id_token_expired"),
    (Sabotage.ALG_NONE, "id_token_alg_not_allowed"),
    (Sabotage.HS256_PUBLIC_KEY, "id_token_alg_not_allowed"),
    (Sabotage.MISSING_NONCE, "id_token_nonce_missing"),
    (Sabotage.WRONG_ISSUER, "id_token_wrong_issuer"),
    (Sabotage.UNKNOWN_KID, "id_token_unknown_key"),
    (Sabotage.ISSUED_IN_FUTURE, "id_token_issued_in_future"),
    (Sabotage.WRONG_AT_HASH, "id_token_at_hash_mismatch"),
]


async def test_a_login_with_a_valid_id_token_files_the_token_under_sub_within_iss(
    provider: OidcProvider,
) -> None:
    async with engine() as eng:
        done = await login(eng, provider)
        token = await eng.token_for(done)
    assert done.outcome == "granted", done.error
    assert token is not None
    assert token.account == fe.AccountRef(provider.issuer, USER.sub) == done.account
    assert token.claims["sub"] == USER.sub and token.claims["iss"] == provider.issuer
    assert token.claims["aud"] == [CLIENT_ID]
    assert token.claims["email"] == USER.email  # from userinfo, whose sub matched
    assert done.claims == token.claims
    assert "id_token" not in token.extra  # the raw ID token is never kept
    # Everything came from the provider's metadata: the endpoints the spec does not write.
    paths = [r.path for r in provider.received()]
    assert paths == ["/token", "/userinfo"]


async def test_every_id_token_algorithm_the_provider_signs_with_is_accepted(provider: OidcProvider) -> None:
    for alg in ("ES256", "PS256"):
        provider.sign_with(alg)
        async with engine() as eng:
            done = await login(eng, provider)
        assert done.outcome == "granted", (alg, done.error)


@pytest.mark.parametrize(("sabotage", "code"), REFUSED, ids=[s.value for s, _ in REFUSED])
async def test_a_spoiled_id_token_is_refused_with_its_code_and_nothing_is_stored(
    provider: OidcProvider, sabotage: Sabotage, code: str
) -> None:
    provider.sabotage_next(sabotage)
    async with engine() as eng:
        done = await login(eng, provider)
        assert (done.state, done.outcome) == ("failed", "failed")
        assert done.error is not None and done.error.code == code
        assert ERROR_CLASSES[fe.ErrorCode(code)] is fe.IdTokenError
        assert await nothing_stored(eng, done)
    assert [r.path for r in provider.received()] == ["/token"]  # no userinfo for a refused token


async def test_a_nonce_replayed_from_an_earlier_flow_is_refused(provider: OidcProvider) -> None:
    async with engine() as eng:
        first = await login(eng, provider)
        assert first.outcome == "granted"
        provider.sabotage_next(Sabotage.REPLAYED_NONCE)  # the next ID token carries the first flow's nonce
        second = await login(eng, provider)
        assert second.error is not None and second.error.code == "id_token_nonce_mismatch"
        assert [t.key for t in await eng.tokens()] == [first.token_key]
        stored = await eng.get(second.id)
        assert stored is not None and stored.token_key is None


async def test_a_jwks_rotation_mid_run_is_followed_within_the_refetch_bound(provider: OidcProvider) -> None:
    async with engine() as eng:
        assert (await login(eng, provider)).outcome == "granted"
        assert provider.jwks_fetches == 1
        provider.rotate_keys()  # the old keys leave the key set; the next ID token has a new kid
        # Within a minute of the last fetch the key cache does not fetch again (a flood of random
        # kids cannot make the engine hammer the provider): that login is refused.
        too_soon = await login(eng, provider)
        assert too_soon.error is not None and too_soon.error.code == "id_token_unknown_key"
        assert provider.jwks_fetches == 1
        eng.clock.advance(61)  # type: ignore[attr-defined]
        after = await login(eng, provider)
        assert after.outcome == "granted", after.error
        assert provider.jwks_fetches == 2
        assert len(await eng.tokens()) == 1  # the same person: one token, replaced


async def test_userinfo_about_another_person_fails_the_flow(provider: OidcProvider) -> None:
    provider.userinfo_sub("someone-else")
    async with engine() as eng:
        done = await login(eng, provider)
        assert done.error is not None and done.error.code == "userinfo_sub_mismatch"
        assert await nothing_stored(eng, done)


async def test_a_signed_userinfo_answer_is_verified_and_read(provider: OidcProvider) -> None:
    provider.sign_userinfo("RS256")
    async with engine() as eng:
        done = await login(eng, provider)
    assert done.outcome == "granted", done.error
    assert done.claims["email"] == USER.email


async def test_a_denied_login_is_denied(provider: OidcProvider) -> None:
    async with engine() as eng:
        done = await login(eng, provider, approve=False)
        assert (done.outcome, done.error.code if done.error else None) == ("denied", "access_denied")
        assert await eng.tokens() == []


async def test_refresh_keeps_the_account_and_claims_and_revocation_ends_the_grant(
    provider: OidcProvider,
) -> None:
    async with engine() as eng:
        done = await login(eng, provider)
        token = await eng.token_for(done)
        assert token is not None
        eng.clock.advance(600)  # type: ignore[attr-defined]
        fresh = await eng.refresh(token)
        assert (fresh.account, fresh.claims, fresh.key) == (token.account, token.claims, token.key)
        assert fresh.access_token != token.access_token
        assert "id_token" not in fresh.extra
        await eng.revoke(fresh)
        assert await eng.tokens() == []
    assert provider.received("/revoke")[-1].status == 200


async def test_the_callback_must_carry_the_issuers_iss(provider: OidcProvider) -> None:
    async with engine() as eng:
        flow = await eng.start(connection=connection(provider))
        assert flow.authorization_url is not None
        back = provider.consent(flow.authorization_url)
        with pytest.raises(fe.CallbackError) as info:
            await eng.callback(back.replace("iss=", "iss=https%3A%2F%2Fimpostor.example&x="))
        assert info.value.code == "issuer_mismatch"


async def test_at_rest_the_claims_are_kept_and_the_id_token_nonce_and_at_hash_are_not(
    provider: OidcProvider, tmp_path: Path
) -> None:
    db = tmp_path / "flows.db"  # no key: the records are plain JSON, so a search of the file is proof
    async with engine(store=f"sqlite:///{db}") as eng:
        flow = await eng.start(connection=connection(provider))
        nonce = dict(parse_qsl(urlsplit(flow.authorization_url or "").query))["nonce"]
        done = await eng.callback(await asyncio.to_thread(provider.consent, flow.authorization_url or ""))
    assert done.outcome == "granted"
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("flows.db*"))
    assert USER.sub.encode() in stored and USER.email.encode() in stored  # the claims are kept
    [raw] = provider.issued_id_tokens
    for secret in (raw, raw.split(".")[2], nonce, "at_hash"):
        assert secret.encode() not in stored, secret[:12]
