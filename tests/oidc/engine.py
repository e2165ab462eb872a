"""What the engine tests against Authlib's provider share: the example spec, an engine, a login.

The engine knows the provider only through ``specs/examples/authlib-oidc.yaml`` and the
issuer URL given as its connection value: every endpoint, the key set and the algorithms
come from the provider's own discovery document. Time is a ``FakeClock`` started at the
wall clock (the provider stamps its tokens with real time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import flowengine as fe
from flowengine.testing import FakeClock

from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, OidcProvider

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "examples" / "authlib-oidc.yaml"
CLIENT = fe.Client(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)


def engine(
    *,
    spec: fe.FlowSpec | Path = SPEC,
    clock: FakeClock | None = None,
    client: fe.Client = CLIENT,
    store: fe.Store | str = "memory://",
) -> fe.AsyncEngine:
    """An engine on the example spec (or ``spec``), its clock a FakeClock at the wall clock."""
    return fe.AsyncEngine(spec, client=client, clock=clock or FakeClock(time.time()), store=store)


def connection(provider: OidcProvider) -> dict[str, str]:
    return {"issuer": provider.issuer}


async def login(eng: fe.AsyncEngine, provider: OidcProvider, *, approve: bool = True) -> fe.Flow:
    """A whole code flow: start, the person at Authlib's consent page, the callback."""
    flow = await eng.start(connection=connection(provider))
    assert flow.authorization_url is not None
    back = await asyncio.to_thread(provider.consent, flow.authorization_url, approve=approve)
    return await eng.callback(back)


class ActingClock(FakeClock):
    """A FakeClock that runs ``act`` (in a thread: it may block) at the start of its ``at``-th sleep."""

    def __init__(self, act: Callable[[], object], at: int) -> None:
        super().__init__(time.time())
        self._act, self._at = act, at

    async def sleep(self, seconds: float) -> None:
        """As FakeClock's (time moves on at once, recorded in ``slept``), acting first when due."""
        if len(self.slept) + 1 == self._at:
            await asyncio.to_thread(self._act)
        self.slept.append(seconds)
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


async def nothing_stored(eng: fe.AsyncEngine, flow: fe.Flow) -> bool:
    """True when the refused flow left no token anywhere: store, flow record, unsaved tokens."""
    stored = await eng.get(flow.id)
    return (
        await eng.tokens() == []
        and eng.unsaved_tokens == []
        and stored is not None
        and stored.token_key is None
        and stored.claims == {}
    )
