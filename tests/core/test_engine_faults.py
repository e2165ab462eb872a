"""Faults at the token endpoint, injected at the transport seam (SECURITY.md 19, 20)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import flowengine as fe
import pytest
from flowengine.testing import MockTransport

from flowengine_httpx import HttpxTransport
from tests.conftest import SandboxFixture

Fault = Callable[[fe.HttpRequest], fe.HttpResponse]


class ScriptedTransport(MockTransport):
    """A MockTransport answering from ``faults`` first (the test may refill it), then the sandbox."""

    def __init__(self, *faults: Fault | fe.FlowError) -> None:
        self.faults = list(faults)
        self.real = HttpxTransport()
        super().__init__(self._answer)

    async def _answer(self, request: fe.HttpRequest) -> fe.HttpResponse:
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, fe.FlowError):
                raise fault
            return fault(request)
        return await self.real.send(request)

    async def aclose(self) -> None:
        await super().aclose()
        await self.real.aclose()


def status(code: int, body: bytes = b"<html>oops</html>", **headers: str) -> Fault:
    return lambda _request: fe.HttpResponse(code, {"content-type": "text/html", **headers}, body)


async def _authorized(
    sandbox: SandboxFixture, spec: fe.FlowSpec, transport: ScriptedTransport, **options: object
) -> tuple[fe.AsyncEngine, str]:
    engine = fe.AsyncEngine(
        spec,
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        transport=transport,
        retry=fe.RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01),
        **options,  # type: ignore[arg-type]
    )
    flow = await engine.start()
    return engine, await sandbox.consent(flow.authorization_url)


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (status(500), "provider_unavailable"),
        (status(503), "provider_unavailable"),
        (status(420, b'{"error": "rate_limit"}', **{"retry-after": "5"}), "rate_limited"),
        (status(200), "invalid_token_response"),
        (fe.TransportError("read timed out", code="transport_timeout", sent=True), "transport_timeout"),
        (fe.TransportError("connection reset", sent=True), "transport_error"),
    ],
    ids=["500", "503", "420", "html-200", "timeout", "reset"],
)
async def test_sec19_a_code_exchange_is_never_retried(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, fault: Fault | fe.FlowError, code: str
) -> None:
    transport = ScriptedTransport(fault)
    engine, callback = await _authorized(sandbox, podio_spec, transport)
    async with engine:
        done = await engine.callback(callback)
    assert done.state == "failed"
    assert done.error is not None and done.error.code == code
    assert len(transport.sent) == 1


async def test_sec19_unsent_exchange_leaves_the_flow_authorized_to_try_again(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    transport = ScriptedTransport(fe.TransportError("connection refused", sent=False))
    engine, callback = await _authorized(sandbox, podio_spec, transport)
    async with engine:
        with pytest.raises(fe.TransportError) as caught:
            await engine.callback(callback)
        assert caught.value.retryable
        flow_id = (await engine.flows())[0].id
        stored = await engine.get(flow_id)
        assert stored is not None and stored.state == "authorized"
        assert (await engine.callback(callback)).state == "exchanged"  # the replay finishes it


async def test_sec19_refresh_retries_with_backoff_and_honours_retry_after(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    transport = ScriptedTransport()
    engine, callback = await _authorized(sandbox, podio_spec, transport)
    async with engine:
        token = await engine.token_for(await engine.callback(callback))
        assert token is not None
        transport.faults = [status(502), status(420, b"{}", **{"retry-after": "0"}), status(503)]
        with pytest.raises(fe.ProviderError) as caught:
            await engine.refresh(token)  # three attempts, all faults
        assert caught.value.code == "provider_unavailable"
        transport.faults = [status(500), fe.TransportError("reset", sent=True)]
        fresh = await engine.refresh(token)  # two faults, then the sandbox answers
    assert fresh.access_token != token.access_token
    assert len(transport.sent) == 1 + 3 + 3


async def test_sec19_invalid_grant_on_refresh_is_not_retried(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    transport = ScriptedTransport()
    engine, callback = await _authorized(sandbox, podio_spec, transport)
    async with engine:
        token = await engine.token_for(await engine.callback(callback))
        assert token is not None
        transport.faults = [status(400, b'{"error": "invalid_grant"}')]
        with pytest.raises(fe.ProviderError):
            await engine.refresh(token)
    assert len(transport.sent) == 2


class BrokenStore:
    """A store whose backend is down: every call fails like a dropped connection."""

    def __getattr__(self, name: str) -> Callable[..., object]:
        async def fail(*_args: object, **_kwargs: object) -> None:
            raise ConnectionRefusedError("backend down")

        return fail


async def test_sec20_store_unreachable_at_callback_sends_nothing(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    working = fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints)
    flow = await working.start()
    callback = await sandbox.consent(flow.authorization_url)
    broken = fe.AsyncEngine(
        podio_spec,
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        store=BrokenStore(),  # type: ignore[arg-type]
    )
    with pytest.raises(fe.StoreError) as caught:
        await broken.callback(callback)
    assert caught.value.code == "store_unavailable"
    assert "ConnectionRefusedError" in caught.value.message
    assert sandbox.token_requests() == []
    assert parse_qs(urlsplit(callback).query)["code"]
    await working.aclose()
