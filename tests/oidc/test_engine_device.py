"""The device grant (RFC 8628) against Authlib's provider: approved, denied, expired, slowed down.

The engine knows the provider only through specs/examples/authlib-oidc.yaml (its device
endpoint is discovered). Every wait goes through a FakeClock: ``clock.slept`` is the exact
schedule of polls, and a ten-minute wait takes no time.
"""

from __future__ import annotations

import flowengine as fe
import pytest

from tests.oidc.engine import ActingClock, connection, engine
from tests.support.oidc_provider import DEVICE_GRANT, USER, OidcProvider, Sabotage


def _polls(provider: OidcProvider) -> list[str]:
    return [r.form.get("grant_type", "") for r in provider.received("/token")]


async def _start(eng: fe.AsyncEngine, provider: OidcProvider) -> fe.Flow:
    flow = await eng.start_device(connection=connection(provider))
    assert flow.state == "requested" and flow.device is not None
    return flow


async def test_an_approved_device_is_granted_with_a_validated_id_token(provider: OidcProvider) -> None:
    async with engine() as eng:
        flow = await _start(eng, provider)
        assert flow.device is not None
        assert flow.device.verification_uri == f"{provider.issuer}/device"
        assert flow.device.verification_uri_complete == (
            f"{provider.issuer}/device?user_code={flow.device.user_code}"
        )
        assert "device_code" not in repr(flow) and flow.device.device_code not in repr(flow)
        provider.decide_device(flow.device.user_code, approve=True)
        done = await eng.poll_device(flow)
        token = await eng.token_for(done)
        stored = await eng.get(flow.id)
    assert (done.state, done.outcome) == ("granted", "granted"), done.error
    assert token is not None and token.account == fe.AccountRef(provider.issuer, USER.sub)
    assert token.claims["sub"] == USER.sub and token.claims["email"] == USER.email
    assert eng.clock.slept == [5]  # type: ignore[attr-defined]  # one interval, then the token
    assert stored is not None and stored.device is not None and stored.device.device_code is None
    assert _polls(provider) == [DEVICE_GRANT]


async def test_pending_polls_wait_the_interval_until_the_person_approves(provider: OidcProvider) -> None:
    user_codes: list[str] = []
    clock = ActingClock(lambda: provider.decide_device(user_codes[0]), at=3)
    async with engine(clock=clock) as eng:
        flow = await _start(eng, provider)
        assert flow.device is not None
        user_codes.append(flow.device.user_code)
        done = await eng.poll_device(flow)
    assert done.outcome == "granted", done.error
    assert clock.slept == [5, 5, 5]
    assert [r.status for r in provider.received("/token")] == [400, 400, 200]


async def test_slow_down_adds_five_seconds_to_every_later_poll(provider: OidcProvider) -> None:
    user_codes: list[str] = []
    clock = ActingClock(lambda: provider.decide_device(user_codes[0]), at=3)
    provider.slow_down_next(2)
    async with engine(clock=clock) as eng:
        flow = await _start(eng, provider)
        assert flow.device is not None
        user_codes.append(flow.device.user_code)
        done = await eng.poll_device(flow)
    assert done.outcome == "granted", done.error
    assert clock.slept == [5, 10, 15]  # RFC 8628 §3.5: +5 s for this poll and every later one


async def test_a_denied_device_ends_denied(provider: OidcProvider) -> None:
    async with engine() as eng:
        flow = await _start(eng, provider)
        assert flow.device is not None
        provider.decide_device(flow.device.user_code, approve=False)
        done = await eng.poll_device(flow)
        assert (done.state, done.outcome) == ("denied", "denied")
        assert done.error is not None and done.error.code == "access_denied"
        assert await eng.tokens() == []


async def test_a_device_code_the_provider_expired_ends_expired(provider: OidcProvider) -> None:
    async with engine() as eng:
        flow = await _start(eng, provider)
        assert flow.device is not None
        provider.expire_device(flow.device.user_code)
        done = await eng.poll_device(flow)
        assert (done.state, done.outcome) == ("expired", "expired")
        assert done.error is not None and done.error.code == "device_code_expired"
        assert await eng.tokens() == []


async def test_polls_pending_until_the_code_runs_out_end_expired_without_asking_again(
    provider: OidcProvider,
) -> None:
    provider.device_settings(interval=5, expires_in=30)
    async with engine() as eng:
        flow = await _start(eng, provider)
        assert flow.expires_at == pytest.approx(eng.clock() + 30)
        done = await eng.poll_device(flow)
        assert (done.state, done.outcome) == ("expired", "expired")
        assert done.error is not None and done.error.code == "device_pending_timeout"
        assert sum(eng.clock.slept) == pytest.approx(30)  # type: ignore[attr-defined]
    # Polls at 5, 10, ... 25 s; at 30 s the code is dead: no poll is sent for it.
    assert [r.status for r in provider.received("/token")] == [400] * 5


async def test_the_callers_timeout_returns_the_flow_still_requested(provider: OidcProvider) -> None:
    async with engine() as eng:
        flow = await _start(eng, provider)
        waiting = await eng.poll_device(flow, timeout=12)
        assert (waiting.state, waiting.outcome) == ("requested", None)
        assert eng.clock.slept == [5, 5]  # type: ignore[attr-defined]
        assert flow.device is not None
        provider.decide_device(flow.device.user_code)
        done = await eng.poll_device(flow.id)  # the same flow, polled again later
        assert done.outcome == "granted"


async def test_a_spoiled_id_token_in_a_device_answer_fails_the_flow_and_stores_nothing(
    provider: OidcProvider,
) -> None:
    provider.sabotage_next(Sabotage.WRONG_AUDIENCE)
    async with engine() as eng:
        flow = await _start(eng, provider)
        assert flow.device is not None
        provider.decide_device(flow.device.user_code)
        done = await eng.poll_device(flow)
        assert (done.outcome, done.error.code if done.error else None) == (
            "failed",
            "id_token_wrong_audience",
        )
        assert await eng.tokens() == []


@pytest.mark.parametrize("ending", ["granted", "denied", "expired"])
async def test_exchange_returns_a_final_device_flow_unchanged_and_sends_nothing(
    provider: OidcProvider, ending: str
) -> None:
    async with engine() as eng:
        flow = await _start(eng, provider)
        assert flow.device is not None
        if ending == "expired":
            provider.expire_device(flow.device.user_code)
        else:
            provider.decide_device(flow.device.user_code, approve=ending == "granted")
        done = await eng.poll_device(flow)
        assert done.outcome == ending
        sent = len(provider.received("/token"))

        again = await eng.exchange(flow.id)

        assert again == done
        assert eng.is_final(again)
        assert len(provider.received("/token")) == sent


async def test_exchange_of_a_pending_device_flow_points_at_polling(provider: OidcProvider) -> None:
    async with engine() as eng:
        flow = await _start(eng, provider)
        with pytest.raises(fe.FlowStateError) as info:
            await eng.exchange(flow.id)
        assert "poll_device" in str(info.value)
        assert provider.received("/token") == []
        assert await eng.get(flow.id) == flow


async def test_a_spec_without_device_section_refuses_start_device() -> None:
    async with fe.AsyncEngine("github", client=fe.Client("id", "secret", "https://app.example/cb")) as eng:
        with pytest.raises(fe.ConfigError) as info:
            await eng.start_device()
    assert info.value.code == "device_unsupported"


def test_the_sync_engine_runs_a_device_flow(provider: OidcProvider) -> None:
    import time

    from flowengine.testing import FakeClock

    from tests.oidc.engine import CLIENT, SPEC

    with fe.Engine(SPEC, client=CLIENT, clock=FakeClock(time.time())) as eng:
        flow = eng.start_device(connection=connection(provider))
        assert flow.device is not None
        provider.decide_device(flow.device.user_code)
        assert eng.poll_device(flow).outcome == "granted"
