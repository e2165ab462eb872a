"""A store holding what an operator's day looks like: granted, denied, failed, expired and pending
flows of podio, and a dead grant; the tests of ``flowengine status`` and of the operator page
read it back and check every number against the store's own counts.

Everything runs through a real engine against the sandbox. The engine's clock is a FakeClock
set an hour back, so that a flow can outlive its ttl without anyone waiting, and every
transition still falls inside the last 24 hours as the status reads them (by the real clock).
"""

from __future__ import annotations

import time
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import attrs
import flowengine as fe
import pytest
from flowengine.testing import FakeClock


class Provider(Protocol):
    """The sandbox as the mix needs it: consent, and forgetting every grant."""

    async def consent(self, url: str | None, *, approve: bool = True) -> str: ...

    def forget_grants(self) -> None: ...


@attrs.frozen
class Mix:
    """What ``make_mix`` did, as the status must report it."""

    started: int = 8
    granted: int = 3
    denied: int = 2
    failed: int = 2  # one error callback (provider_error), one expired (flow_expired)
    pending: int = 1
    dead_key: str = "podio:user:1001"
    failure_codes: tuple[tuple[str, int], ...] = (
        ("access_denied", 2),
        ("flow_expired", 1),
        ("provider_error", 1),
    )


def clock_an_hour_back() -> FakeClock:
    return FakeClock(start=time.time() - 3600)


def _state(url: str | None) -> str:
    assert url is not None
    return parse_qs(urlsplit(url).query)["state"][0]


async def make_mix(engine: fe.AsyncEngine, provider: Provider, clock: FakeClock) -> Mix:
    """Drive the mix through ``engine`` (whose clock is ``clock``); return what it should count."""
    expiring = await engine.start()  # will outlive its ttl
    assert engine.spec.machine is not None
    clock.advance(engine.spec.machine.ttl + 60)
    late = await provider.consent(expiring.authorization_url, approve=True)
    with pytest.raises(fe.CallbackError, match="expired"):
        await engine.callback(late)
    for approve in (True, False, True, False, True):
        flow = await engine.start()
        await engine.callback(await provider.consent(flow.authorization_url, approve=approve))
        clock.advance(30)
    failing = await engine.start()
    await engine.callback(
        f"{failing.redirect_uri}?error=server_error&state={_state(failing.authorization_url)}"
    )
    await engine.start()  # left waiting for its callback
    provider.forget_grants()
    with pytest.raises(fe.ProviderError) as refused:
        await engine.refresh("podio:user:1001")
    assert refused.value.code == "invalid_grant"
    return Mix()
