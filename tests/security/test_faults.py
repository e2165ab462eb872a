"""SECURITY.md 19 and 20: a flaky token endpoint and an unreachable store end in typed errors;
a code is never sent twice; refresh retries with backoff and honours ``Retry-After``.

The faults are the sandbox's own (``flowengine_sandbox.faults``), over real loopback HTTP, so the
httpx transport's timeouts and size cap are part of what is tested.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import attrs
import flowengine as fe
import pytest
from flowengine.testing import FakeClock

from flowengine_sandbox.faults import Fault
from tests.conftest import SandboxFixture
from tests.security.helpers import assert_nothing_sent, token_attempts

FAST = fe.RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


def _engine(sandbox: SandboxFixture, spec: fe.FlowSpec, **options: Any) -> fe.AsyncEngine:
    options.setdefault("retry", FAST)
    # 2 s: far above what a normal answer takes on a loaded machine (0.5 s was a timing window:
    # a retry after a fault could time out too); faults meant to time out last far longer.
    options.setdefault("transport_config", fe.TransportConfig(timeout=2.0, max_response_bytes=256 * 1024))
    return fe.AsyncEngine(spec, client=sandbox.client, endpoints=sandbox.endpoints, **options)


EXCHANGE_FAULTS: list[Any] = [
    pytest.param(Fault("status", status=500), "provider_unavailable", id="500"),
    pytest.param(Fault("status", status=502), "provider_unavailable", id="502"),
    pytest.param(Fault("status", status=503, retry_after=1), "provider_unavailable", id="503"),
    pytest.param(Fault("status", status=504), "provider_unavailable", id="504"),
    pytest.param(Fault("rate_limit", retry_after=30), "rate_limited", id="420"),
    pytest.param(Fault("rate_limit", status=429), "rate_limited", id="429"),
    pytest.param(Fault("reset"), "transport_error", id="reset-mid-body"),
    pytest.param(Fault("reset", stage="before"), "transport_error", id="reset-unprocessed"),
    pytest.param(
        Fault("read_timeout", delay=30), "transport_timeout", id="read-timeout", marks=pytest.mark.slow
    ),
    pytest.param(
        Fault("latency", stage="after", delay=30),
        "transport_timeout",
        id="late-answer",
        marks=pytest.mark.slow,
    ),
    pytest.param(Fault("endless"), "response_too_large", id="endless-body"),
    pytest.param(Fault("html", status=200), "invalid_token_response", id="html-200"),
    pytest.param(Fault("html", status=502), "provider_unavailable", id="html-502"),
    pytest.param(Fault("content_type", content_type="text/html"), None, id="token-labelled-html"),
]


@pytest.mark.parametrize(("fault", "code"), EXCHANGE_FAULTS)
async def test_sec19_a_faulty_token_endpoint_fails_the_exchange_without_a_second_attempt(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, fault: Fault, code: str | None
) -> None:
    async with _engine(sandbox, podio_spec) as engine:
        flow = await engine.start()
        callback = await sandbox.consent(flow.authorization_url)
        sandbox.settings.faults.add(attrs.evolve(fault, times=1))
        done = await engine.callback(callback)
        again = await engine.callback(callback)  # a reload of the callback sends nothing either
        tokens = await engine.tokens()
    assert again == done
    assert token_attempts(sandbox) == 1
    if code is None:  # the real token under a wrong Content-Type: JSON is JSON
        assert done.state == "exchanged" and len(tokens) == 1
        return
    assert done.state == "failed"
    assert done.error is not None and done.error.code == code
    assert tokens == []


async def test_sec19_a_420_keeps_what_the_provider_said(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with _engine(sandbox, podio_spec, retry=fe.RetryPolicy(attempts=1)) as engine:
        flow = await engine.start()
        token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
        assert token is not None
        sandbox.settings.faults.add(Fault("rate_limit", retry_after=42, times=1))
        with pytest.raises(fe.ProviderError) as caught:
            await engine.refresh(token)
    error = caught.value
    assert (error.code, error.status, error.retryable, error.retry_after) == ("rate_limited", 420, True, 42)
    assert error.provider_error == "rate_limit"


async def test_sec19_an_exchange_that_never_reached_the_server_can_be_tried_again(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    down = {**sandbox.endpoints, "token": f"http://127.0.0.1:{dead_port}/oauth/token/v2"}
    async with fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=down) as engine:
        flow = await engine.start()
        callback = await sandbox.consent(flow.authorization_url)
        with pytest.raises(fe.TransportError) as caught:
            await engine.callback(callback)
        assert not caught.value.sent and caught.value.retryable
        stored = await engine.get(flow.id)
        assert stored is not None
        assert stored.state == "authorized"  # back from `exchanging`: the code is unspent
        assert stored.history[-1].event == "unsent"
        async with fe.AsyncEngine(
            podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=engine.store
        ) as healthy:
            assert (await healthy.callback(callback)).state == "exchanged"
    assert token_attempts(sandbox) == 1


class SpyPolicy(fe.RetryPolicy):
    """RetryPolicy that records what the engine asks of it, and waits almost nothing."""

    asked: list[tuple[int, float | None]]

    def delay(self, attempt: int, retry_after: float | None) -> float:
        self.asked.append((attempt, retry_after))
        return 0.001


async def _token(engine: fe.AsyncEngine, sandbox: SandboxFixture) -> fe.Token:
    flow = await engine.start()
    token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
    assert token is not None
    return token


@pytest.mark.slow  # waits out one 2 s read timeout
async def test_sec19_refresh_retries_with_backoff_and_passes_retry_after_on(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    policy = SpyPolicy(attempts=5)
    object.__setattr__(policy, "asked", [])
    async with _engine(sandbox, podio_spec, retry=policy) as engine:
        token = await _token(engine, sandbox)
        sandbox.settings.faults.add(
            Fault("status", status=503, times=1),
            Fault("rate_limit", retry_after=7, times=1),
            Fault("reset", stage="before", times=1),
            Fault("read_timeout", stage="before", delay=30, times=1),
        )
        fresh = await engine.refresh(token)
    assert fresh.access_token != token.access_token
    assert policy.asked == [(0, None), (1, 7.0), (2, None), (3, None)]
    assert token_attempts(sandbox) == 1 + 5


@pytest.mark.slow
async def test_sec19_refresh_waits_as_long_as_retry_after_says(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with _engine(
        sandbox, podio_spec, retry=fe.RetryPolicy(attempts=2, base_delay=0, max_delay=5)
    ) as engine:
        token = await _token(engine, sandbox)
        sandbox.settings.faults.add(Fault("rate_limit", retry_after=1, times=1))
        await engine.refresh(token)
    [limited] = sandbox.settings.faults.injected()
    refreshed = sandbox.token_requests()[-1]
    assert refreshed.grant_type == "refresh_token"
    assert refreshed.received_at - limited.at >= 0.95


def test_sec19_retry_after_is_used_as_given_and_backoff_is_jittered_exponentially() -> None:
    policy = fe.RetryPolicy(attempts=4, base_delay=0.5, max_delay=30)
    assert policy.delay(3, 2) == 2
    for attempt in range(6):
        waits = [policy.delay(attempt, None) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= min(30, 0.5 * 2**attempt)


async def test_sec19_a_retry_after_beyond_the_policy_is_not_cut_short(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    policy = fe.RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.05)
    async with _engine(sandbox, podio_spec, retry=policy) as engine:
        token = await _token(engine, sandbox)
        sandbox.settings.faults.add(Fault("rate_limit", retry_after=3600))
        with pytest.raises(fe.ProviderError) as caught:
            await engine.refresh(token)
    assert caught.value.code == "rate_limited" and caught.value.retry_after == 3600
    assert token_attempts(sandbox) == 1 + 1  # told to come back in an hour: no second request now


async def test_sec19_refresh_gives_up_with_a_typed_error_and_keeps_the_token(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with _engine(sandbox, podio_spec) as engine:
        token = await _token(engine, sandbox)
        sandbox.settings.faults.add(Fault("status", status=503))
        with pytest.raises(fe.ProviderError) as caught:
            await engine.refresh(token)
        stored = await engine.get_token(token.key)
    assert caught.value.code == "provider_unavailable" and caught.value.retryable
    assert stored == token
    assert token_attempts(sandbox) == 1 + FAST.attempts


async def test_sec19_a_rotated_refresh_whose_answer_is_lost_leaves_the_grant_dead(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    """The price of rotation: the provider spent the refresh token, its answer never arrived.

    The retry sends the spent token, gets ``invalid_grant``, finds nothing newer in the store,
    and marks the grant dead, as SECURITY.md 18 asks; a new authorization is needed.
    """
    assert sandbox.settings.rotate_refresh_tokens
    async with _engine(sandbox, podio_spec) as engine:
        token = await _token(engine, sandbox)
        sandbox.settings.faults.add(Fault("reset", stage="after", times=1))
        with pytest.raises(fe.ProviderError) as caught:
            await engine.refresh(token)
        stored = await engine.get_token(token.key)
    assert caught.value.code == "invalid_grant"
    assert stored is not None and stored.dead
    assert [r.status for r in sandbox.token_requests()] == [200, 200, 400]


# --- 20: the store is unreachable -------------------------------------------------------------------------


class BrokenStore:
    """A store whose backend is down: every call fails like a dropped connection."""

    def __init__(self, working: fe.Store, fails: set[str]) -> None:
        self.working = working
        self.fails = fails

    def __getattr__(self, name: str) -> Any:
        if name in self.fails:

            async def fail(*_args: object, **_kwargs: object) -> None:
                raise ConnectionRefusedError(f"{name}: backend down")

            return fail
        return getattr(self.working, name)


@pytest.mark.parametrize("fails", [{"get_by_state"}, {"compare_and_set"}, {"acquire"}])
async def test_sec20_store_down_at_callback_rejects_it_and_sends_nothing(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, fails: set[str]
) -> None:
    async with fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints) as working:
        flow = await working.start()
        callback = await sandbox.consent(flow.authorization_url)
        broken = fe.AsyncEngine(
            podio_spec,
            client=sandbox.client,
            endpoints=sandbox.endpoints,
            store=BrokenStore(working.store, fails),  # type: ignore[arg-type]
        )
        with pytest.raises(fe.StoreError) as caught:
            await broken.callback(callback)
        assert caught.value.code == "store_unavailable" and caught.value.retryable
        assert "the store failed: ConnectionRefusedError" in str(caught.value)
        assert_nothing_sent(sandbox)
        assert (await working.callback(callback)).state in ("exchanged", "authorized")


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{port}/0?timeout=1",
        "postgresql://postgres@127.0.0.1:{port}/test",
    ],
    ids=["redis", "postgres"],
)
async def test_sec20_an_unreachable_store_server_is_a_clear_error_and_nothing_is_sent(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, url: str
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    async with fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints) as working:
        callback = await sandbox.consent((await working.start()).authorization_url)
    started = time.monotonic()
    with pytest.raises(fe.StoreError) as caught:
        async with fe.AsyncEngine(
            podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=url.format(port=port)
        ) as engine:
            await engine.callback(callback)
    assert caught.value.code == "store_unavailable"
    assert time.monotonic() - started < 15
    assert_nothing_sent(sandbox)


async def test_sec20_store_down_after_the_token_arrived_never_resends_the_code(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    """The code is spent and the answer cannot be saved: the flow fails as interrupted, once."""
    async with fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints) as working:
        flow = await working.start()
        callback = await sandbox.consent(flow.authorization_url)
        broken = fe.AsyncEngine(
            podio_spec,
            client=sandbox.client,
            endpoints=sandbox.endpoints,
            store=BrokenStore(working.store, {"put_token"}),  # type: ignore[arg-type]
            clock=FakeClock(time.time()),  # the save deadline passes without waiting for it
        )
        with pytest.raises(fe.StoreError) as caught:
            await broken.callback(callback)
        assert caught.value.code == "token_unsaved"
        await broken.aclose()
        done = await working.callback(callback)
    assert done.state == "failed"
    assert done.error is not None and done.error.code == "exchange_interrupted"
    assert token_attempts(sandbox) == 1
