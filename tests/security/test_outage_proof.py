"""SECURITY.md 23: a store outage at any step loses no token and kills no grant.

The engine talks to the real Redis or PostgreSQL through a fault proxy of our own
(``tests/support/faultproxy.py``). The provider (the sandbox, refresh tokens rotating)
answers; at that very moment the proxy refuses every connection, for 1 s, 5 s or 40 s of
the engine's (fake) time. The engine's save deadline is 30 s:

- shorter outages: the answer is kept and saved when the store returns; the step ends
  as if nothing happened, and the next refresh sends the new refresh token (the
  sandbox would answer ``invalid_grant`` to the spent one);
- the 40 s outage: the call fails with ``token_unsaved`` naming the token, the grant is
  not marked dead, a refresh in this process meanwhile sends nothing (the kept token is
  current), and the token is saved once the store answers again.

Time is a fake clock: the outage ends when the engine's own backoff has waited it out.
Once the proxy relays again the test waits (bounded, by count) for the store's pool to
reconnect: an event, not a window.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import flowengine as fe
import pytest
from flowengine import _plugins as plugins
from flowengine.testing import FakeClock, MockTransport

from flowengine_httpx import HttpxTransport
from flowengine_sandbox.plugin import PodioSandbox, SpecSandbox
from tests.conftest import SandboxFixture
from tests.stores.backends import Backend
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.slow  # two real stores, a proxy and the sandbox per case

SAVE_DEADLINE = 30.0
APP = {"app_id": "2002", "app_token": "sandbox-app-token"}


class OutageClock(FakeClock):
    """A fake clock that ends the proxy's outage once the engine has waited it out."""

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__()
        self.proxy = proxy
        self.until: float | None = None
        self.store: fe.Store | None = None

    async def start_outage(self, seconds: float) -> None:
        await self.proxy.refuse()
        self.until = self.now + seconds

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        if self.until is not None and self.now >= self.until:
            self.until = None
            await self.proxy.restore()
            await _recovered(self.store)


async def _recovered(store: fe.Store | None) -> None:
    """Wait until the store's own pool answers again (a few failed calls at most)."""
    for _ in range(40):
        try:
            assert store is not None
            await store.get("nothing")
            return
        except fe.StoreError:
            continue
    raise AssertionError("the store did not come back after the outage")


class CutAfter:
    """Forwards to the sandbox; right after the answer to the named step, the store goes away."""

    def __init__(self, clock: OutageClock, step: str, seconds: float) -> None:
        self.clock, self.step, self.seconds = clock, step, seconds
        self.real = HttpxTransport()
        self.sent: list[str] = []

    async def __call__(self, request: fe.HttpRequest) -> fe.HttpResponse:
        step = _step_of(request)
        self.sent.append(step)
        response = await self.real.send(request)
        if step == self.step:
            self.step = "done"  # once
            await self.clock.start_outage(self.seconds)
        return response


def _step_of(request: fe.HttpRequest) -> str:
    if request.url.endswith("/revoke") or "revoke" in request.url:
        return "revoke"
    fields: dict[str, Any] = json.loads(request.body or b"{}") if request.body.startswith(b"{") else {}
    return {"authorization_code": "exchange", "refresh_token": "refresh", "app": "grant"}.get(
        str(fields.get("grant_type")), "other"
    )


def _sandbox_for(step: str, sandbox: SandboxFixture) -> PodioSandbox | SpecSandbox:
    """Podio's emulation; for revocation (which Podio documents none of) Box's, emulated from its spec."""
    if step == "revoke":
        return SpecSandbox(fe.load_spec("box"), sandbox.server.url, sandbox.settings)
    spec = fe.load_spec("podio-app" if step == "grant" else "podio")
    return PodioSandbox(spec, sandbox.server.url, sandbox.settings)


async def _engine(
    box: PodioSandbox | SpecSandbox, url: str, transport: CutAfter, clock: OutageClock
) -> fe.AsyncEngine:
    spec = box.spec
    engine = fe.AsyncEngine(
        spec,
        client=box.client,
        endpoints=box.endpoints,
        store=url,
        transport=MockTransport(transport),
        clock=clock,
        save_deadline=SAVE_DEADLINE,
        retry=fe.RetryPolicy(attempts=1),
    )
    clock.store = engine.store
    return engine


async def _run(step: str, engine: fe.AsyncEngine, box: PodioSandbox | SpecSandbox) -> Callable[[], Any]:
    """Bring the grant to the step, run the step; return what reads its token back afterwards."""
    if step == "grant":
        await engine.grant("app", APP)
        return lambda: engine.get_token("podio-app:app:2002")
    flow = await engine.start()
    callback = await box.consent(flow.authorization_url or "", approve=True)
    if step == "exchange":
        await engine.callback(callback)
        return lambda: engine.get_token("podio:user:1001")
    token = await engine.token_for(await engine.callback(callback))
    assert token is not None
    if step == "refresh":
        await engine.refresh(token)
    else:
        await engine.revoke(token)
    return lambda: engine.get_token(token.key)


@pytest.mark.parametrize("seconds", [1, 5, 40])
@pytest.mark.parametrize("step", ["exchange", "refresh", "grant", "revoke"])
async def test_sec23_an_outage_right_after_the_provider_answered_loses_nothing(
    networked_backend: Backend,
    fault_proxy: FaultProxy,
    sandbox: SandboxFixture,
    tmp_path: Any,
    step: str,
    seconds: int,
) -> None:
    backend, proxy = networked_backend, fault_proxy
    url = backend.new_url(tmp_path)
    direct = plugins.open_store(url)  # the schema made with the default timeouts
    await direct.get("nothing")
    clock = OutageClock(proxy)
    transport = CutAfter(clock, step, seconds)
    with _sandbox_for(step, sandbox) as box:
        engine = await _engine(box, backend.via(url, proxy.host, proxy.port), transport, clock)
        try:
            if seconds < SAVE_DEADLINE:
                read_back = await _run(step, engine, box)
                assert transport.sent.count(step) == 1  # nothing was sent twice
                await _the_step_landed(step, engine, direct, read_back)
            else:
                with pytest.raises(fe.StoreError) as caught:
                    await _run(step, engine, box)
                assert transport.sent.count(step) == 1
                await _kept_then_saved(step, caught.value, engine, direct)
                assert transport.sent.count(step) == 1  # the kept token's successor sent nothing
        finally:
            await engine.aclose()
            await direct.aclose()
            backend.cleanup(url)


async def _the_step_landed(
    step: str, engine: fe.AsyncEngine, direct: fe.Store, read_back: Callable[[], Any]
) -> None:
    token = await read_back()
    if step == "revoke":
        assert token is None  # revoked at the provider and deleted from the store
        return
    assert token is not None and not token.dead
    stored = await direct.get_token(token.key)
    assert stored is not None and stored.fingerprint == token.fingerprint
    assert engine.unsaved_tokens == []
    # The next refresh sends the saved (new) refresh token: the sandbox accepts it.
    assert (await engine.refresh(token)).fingerprint != token.fingerprint
    lease = await direct.acquire(f"refresh:{token.key}", 1)
    assert lease is not None  # no lease is left behind by the outage
    await direct.release(lease)


async def _kept_then_saved(step: str, error: fe.StoreError, engine: fe.AsyncEngine, direct: fe.Store) -> None:
    if step == "revoke":
        assert error.code == "store_unavailable"  # revoked at the provider; the store kept it
        return
    assert error.code == "token_unsaved"
    [kept] = engine.unsaved_tokens
    assert kept.key in error.message and kept.fingerprint in error.message
    assert not kept.dead
    stored = await direct.get_token(kept.key)
    assert stored is None or not stored.dead  # the grant is not marked dead
    # Meanwhile, a refresh in this process sends nothing: the kept token is the current one.
    assert (await engine.refresh(kept.key)).fingerprint == kept.fingerprint
    await engine.aclose()  # the store is back: the kept token is saved on the way out
    saved = await direct.get_token(kept.key)
    assert saved is not None and saved.fingerprint == kept.fingerprint and not saved.dead
