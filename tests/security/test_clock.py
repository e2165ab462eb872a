"""SECURITY.md 22: ``expires_at`` is the receipt time plus ``expires_in`` minus a leeway (60 s by default).

The engine's clock is injected; a transport that lets time pass while the request is out
shows that the receipt time, not the time of asking, is what counts.
"""

from __future__ import annotations

import json

import flowengine as fe
import pytest
from flowengine.testing import FakeClock

from flowengine_httpx import HttpxTransport
from flowengine_sandbox.faults import Fault
from tests.conftest import SandboxFixture
from tests.security.helpers import (
    podio_variant,
    token_body,
)

SLOW = 12.5  # seconds the token request takes, on the engine's clock


class SlowTransport(HttpxTransport):
    """Sends for real; the engine's clock moves on by ``SLOW`` seconds while the request is out."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.sent_at: list[float] = []

    async def send(self, request: fe.HttpRequest) -> fe.HttpResponse:
        self.sent_at.append(self.clock())
        response = await super().send(request)
        self.clock.advance(SLOW)
        return response


async def _token(
    sandbox: SandboxFixture, spec: fe.FlowSpec, clock: FakeClock
) -> tuple[fe.Token, SlowTransport]:
    transport = SlowTransport(clock)
    async with fe.AsyncEngine(
        spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=clock, transport=transport
    ) as engine:
        flow = await engine.start()
        token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
    assert token is not None
    return token, transport


async def test_sec22_expires_at_is_receipt_time_plus_expires_in_minus_sixty_seconds(
    sandbox: SandboxFixture,
) -> None:
    spec = podio_variant(lambda d: d["token"].pop("leeway"))  # the default
    assert spec.token.leeway == 60
    clock = FakeClock()
    token, transport = await _token(sandbox, spec, clock)
    [asked] = transport.sent_at
    assert token.obtained_at == asked + SLOW  # received, not asked
    assert token.expires_at == asked + SLOW + sandbox.settings.access_ttl - 60


async def test_sec22_the_specs_leeway_is_used(sandbox: SandboxFixture) -> None:
    clock = FakeClock()
    token, _ = await _token(sandbox, podio_variant(lambda d: d["token"].update(leeway=300)), clock)
    assert token.expires_at == token.obtained_at + sandbox.settings.access_ttl - 300


@pytest.mark.parametrize(("lifetime", "kept"), [(60, 30), (10, 5), (1, 0.5), (0, 0), (121, 61)])
async def test_sec22_a_short_lived_token_keeps_half_its_life(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, lifetime: int, kept: float
) -> None:
    clock = FakeClock()
    sandbox.settings.faults.add(
        Fault("respond", stage="after", body=json.dumps(token_body(expires_in=lifetime)))
    )
    token, _ = await _token(sandbox, podio_spec, clock)
    assert token.expires_at == token.obtained_at + kept
    assert token.expires_within(0, clock()) is (kept == 0)


async def test_sec22_a_refreshed_token_counts_from_its_own_receipt(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    clock = FakeClock()
    transport = SlowTransport(clock)
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=clock, transport=transport
    ) as engine:
        flow = await engine.start()
        token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
        assert token is not None
        clock.advance(3600)
        fresh = await engine.refresh(token)
    assert fresh.obtained_at == transport.sent_at[-1] + SLOW
    assert fresh.expires_at == fresh.obtained_at + sandbox.settings.access_ttl - 60
    assert fresh.expires_at > token.expires_at  # type: ignore[operator]


async def test_sec22_a_flow_expires_exactly_at_its_ttl(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    clock = FakeClock()
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=clock
    ) as engine:
        on_time = await engine.start()
        late = await engine.start()
        on_time_callback = await sandbox.consent(on_time.authorization_url)
        late_callback = await sandbox.consent(late.authorization_url)
        clock.advance(599.999)
        assert (await engine.callback(on_time_callback)).state == "exchanged"
        clock.advance(0.001)
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(late_callback)
    assert caught.value.code == "flow_expired"
