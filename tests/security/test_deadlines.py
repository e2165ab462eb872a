"""SECURITY.md 24: every request to a provider has a total deadline, on every transport.

A token endpoint that trickles its answer a byte at a time never lets a per-read
timeout fire. Here the sandbox's trickle fault (``faults.py``) does that to the
token endpoint, with a per-read timeout far above the gap between bytes: only
``TransportConfig.request_deadline`` can end the request, and it must, on time.
The transports' own contract tests are in ``tests/plugins/test_transports.py``.
"""

from __future__ import annotations

import asyncio

import flowengine as fe
import pytest

from flowengine_aiohttp import AiohttpTransport
from flowengine_httpx import HttpxTransport
from flowengine_sandbox.faults import Fault
from tests.conftest import SandboxFixture

#: A byte every 50 ms: each read waits far less than the 5 s read timeout.
TRICKLING = fe.TransportConfig(timeout=5.0, request_deadline=0.3)
GAP = 0.05
#: An upper bound far above the deadline, never a window: the whole trickle lasts ~20 s or more.
BOUND = 15.0


@pytest.fixture(params=[AiohttpTransport, HttpxTransport], ids=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> fe.Transport:
    transport: fe.Transport = request.param(TRICKLING)
    return transport


@pytest.mark.parametrize("part", ["headers", "body"])
async def test_sec24_a_trickling_token_endpoint_fails_the_exchange_on_time(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, transport: fe.Transport, part: str
) -> None:
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, transport=transport
    ) as engine:
        flow = await engine.start()
        callback = await sandbox.consent(flow.authorization_url)
        sandbox.settings.faults.add(Fault("trickle", part=part, interval=GAP, times=1))
        async with asyncio.timeout(BOUND):
            done = await engine.callback(callback)
        [record] = await asyncio.to_thread(sandbox.settings.faults.trickles.wait, 1, BOUND)
    assert done.state == "failed"  # the code was sent: never again (SECURITY.md 19)
    assert done.error is not None and done.error.code == "transport_timeout"
    assert record.client_left and record.trickled < record.total  # cut off, not waited out


@pytest.mark.slow  # waits out one 2 s deadline
@pytest.mark.parametrize("transport_class", [AiohttpTransport, HttpxTransport], ids=["aiohttp", "httpx"])
async def test_sec24_a_refresh_cut_at_its_deadline_is_retried_and_succeeds(
    sandbox: SandboxFixture,
    podio_spec: fe.FlowSpec,
    transport_class: type[AiohttpTransport] | type[HttpxTransport],
) -> None:
    # The exchange and the retry are ordinary requests: their deadline must be far above what
    # one takes on a loaded machine (0.3 s was not), and the trickle far longer than it.
    transport = transport_class(fe.TransportConfig(timeout=5.0, request_deadline=2.0))
    retry = fe.RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01)
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, transport=transport, retry=retry
    ) as engine:
        flow = await engine.start()
        token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
        assert token is not None
        # Before: the endpoint never saw this attempt (with rotation, a lost answer after it did
        # spends the refresh token: that is SECURITY.md 23's to keep, not a deadline's).
        sandbox.settings.faults.add(Fault("trickle", part="headers", stage="before", interval=0.5, times=1))
        async with asyncio.timeout(BOUND):
            fresh = await engine.refresh(token)
    assert fresh.access_token != token.access_token
    # The sandbox logs the trickle once it saw the client leave, on its own thread: awaited.
    [record] = await asyncio.to_thread(sandbox.settings.faults.trickles.wait, 1, BOUND)
    assert record.client_left


async def test_sec24_retries_stop_at_the_operation_deadline() -> None:
    """A provider that keeps answering 503: the backoff would go on; the operation's deadline ends it."""
    from flowengine.testing import FakeClock, MockTransport, json_response

    clock = FakeClock()
    busy = MockTransport(lambda _r: json_response({"error": "temporarily_unavailable"}, status=503))
    config = fe.TransportConfig(operation_deadline=10.0)
    retry = fe.RetryPolicy(attempts=50, base_delay=1.0, max_delay=4.0)
    async with fe.AsyncEngine(
        "podio-app", client=fe.Client("cid", "cs"), transport=busy, clock=clock,
        transport_config=config, retry=retry,
    ) as engine:  # fmt: skip
        started = clock()
        with pytest.raises(fe.TransportTimeoutError) as caught:
            await engine.grant("app", {"app_id": "1", "app_token": "t"})
    assert caught.value.code == "transport_timeout"
    assert caught.value.sent  # the attempts reached the server
    assert clock() - started <= 10.0  # never waited past the deadline
    assert 1 < len(busy.sent) < 50


async def test_sec24_a_request_that_never_answers_is_cut_at_the_operation_deadline() -> None:
    """The transport's own deadline is longer: the operation's cuts the attempt short."""
    never = asyncio.Event()

    async def hang(_request: fe.HttpRequest) -> fe.HttpResponse:
        await never.wait()
        raise AssertionError("unreachable")

    from flowengine.testing import MockTransport

    config = fe.TransportConfig(request_deadline=60.0, operation_deadline=0.2)
    async with fe.AsyncEngine(
        "podio-app", client=fe.Client("cid", "cs"), transport=MockTransport(hang), transport_config=config
    ) as engine:
        with pytest.raises(fe.TransportTimeoutError):
            async with asyncio.timeout(30):  # an upper bound far above the deadline, never a window
                await engine.grant("app", {"app_id": "1", "app_token": "t"})
