"""Token revocation (RFC 7009), described by a spec's `revocation` section."""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import parse_qs

import flowengine as fe
import pytest
import yaml
from flowengine.testing import MockTransport

from flowengine_memory import MemoryStore

REVOKE_URL = "https://id.example/oauth/revoke"


def Recorder(*answers: fe.HttpResponse) -> MockTransport:
    """Answers every request with the next scripted response; ``sent`` keeps what was sent."""
    queue = list(answers)
    return MockTransport(lambda _request: queue.pop(0))


def _spec(podio_spec: fe.FlowSpec) -> fe.FlowSpec:
    with open(podio_spec.source, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    data["endpoints"]["revoke"] = REVOKE_URL
    data["revocation"] = {
        "endpoint": "revoke",
        "encoding": "form",
        "client_auth": "basic",
        "params": {"token": "{token}", "token_type_hint": "{token_type_hint}"},
    }
    return fe.load_spec(data)


def _token(refresh: str | None = "refresh-1") -> fe.Token:
    return fe.Token(
        provider="podio",
        account=fe.AccountRef("user", 1),
        access_token="access-1",
        token_type="bearer",
        obtained_at=0.0,
        refresh_token=refresh,
    )


async def _engine(spec: fe.FlowSpec, transport: MockTransport, token: fe.Token) -> fe.AsyncEngine:
    store = MemoryStore()
    await store.put_token(token)
    return fe.AsyncEngine(
        spec,
        client=fe.Client("my app", "s3cret"),
        store=store,
        transport=transport,
        retry=fe.RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01),
    )


def ok(status: int = 200, body: bytes = b"") -> fe.HttpResponse:
    return fe.HttpResponse(status, {"content-type": "application/json"}, body)


async def test_revoke_sends_the_refresh_token_with_basic_auth_and_forgets_it(podio_spec: fe.FlowSpec) -> None:
    transport = Recorder(ok())
    engine = await _engine(_spec(podio_spec), transport, _token())
    await engine.revoke(_token().key)
    [request] = transport.sent
    assert (request.method, request.url) == ("POST", REVOKE_URL)
    assert parse_qs(request.body.decode()) == {"token": ["refresh-1"], "token_type_hint": ["refresh_token"]}
    assert base64.b64decode(request.headers["authorization"].split()[1]) == b"my+app:s3cret"
    assert await engine.get_token(_token().key) is None


async def test_revoke_without_a_refresh_token_sends_the_access_token(podio_spec: fe.FlowSpec) -> None:
    transport = Recorder(ok())
    engine = await _engine(_spec(podio_spec), transport, _token(refresh=None))
    await engine.revoke(_token(refresh=None))
    assert parse_qs(transport.sent[0].body.decode())["token_type_hint"] == ["access_token"]


async def test_sec19_revoke_retries_503_and_honours_retry_after(podio_spec: fe.FlowSpec) -> None:
    busy: Callable[[], fe.HttpResponse] = lambda: fe.HttpResponse(503, {"retry-after": "0"}, b"")  # noqa: E731
    transport = Recorder(busy(), busy(), ok())
    engine = await _engine(_spec(podio_spec), transport, _token())
    await engine.revoke(_token())
    assert len(transport.sent) == 3


async def test_a_refused_revocation_keeps_the_token(podio_spec: fe.FlowSpec) -> None:
    transport = Recorder(ok(400, b'{"error": "unsupported_token_type"}'))
    engine = await _engine(_spec(podio_spec), transport, _token())
    with pytest.raises(fe.ProviderError) as caught:
        await engine.revoke(_token())
    assert caught.value.provider_error == "unsupported_token_type"
    assert await engine.get_token(_token().key) is not None


async def test_a_spec_without_revocation_says_so(podio_spec: fe.FlowSpec) -> None:
    engine = await _engine(podio_spec, Recorder(), _token())
    with pytest.raises(fe.ConfigError) as caught:
        await engine.revoke(_token())
    assert caught.value.code == "revocation_unsupported"


def test_revocation_must_send_the_token(podio_spec: fe.FlowSpec) -> None:
    spec = _spec(podio_spec)
    with open(podio_spec.source, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    data["endpoints"]["revoke"] = REVOKE_URL
    data["revocation"] = {"endpoint": "revoke", "params": {"token_type_hint": "{token_type_hint}"}}
    with pytest.raises(fe.SpecError, match=r"\$\.revocation\.params: no parameter sends the \{token\}"):
        fe.load_spec(data)
    assert spec.revocation is not None
