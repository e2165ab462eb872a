"""SECURITY.md 8 and 9: whatever the token endpoint answers, it is parsed sensibly or refused with a
typed error, and nothing unusable is stored.

The answers are the sandbox's own, over HTTP: its ``respond`` fault lets the real endpoint spend
the code, then replaces the answer with the one under test.
"""

from __future__ import annotations

import json
from typing import Any

import flowengine as fe
import pytest

from flowengine_sandbox.faults import Fault
from tests.conftest import SandboxFixture
from tests.security.helpers import token_body

ACCESS = token_body()["access_token"]
REFRESH = token_body()["refresh_token"]


def _respond(body: str | bytes | object, status: int = 200, content_type: str = "application/json") -> Fault:
    text = body if isinstance(body, str) else body.decode() if isinstance(body, bytes) else json.dumps(body)
    return Fault("respond", stage="after", status=status, content_type=content_type, body=text, times=1)


async def _exchange_with(engine: fe.AsyncEngine, sandbox: SandboxFixture, fault: Fault) -> fe.Flow:
    flow = await engine.start(scope="global:all")
    callback = await sandbox.consent(flow.authorization_url)
    sandbox.settings.faults.add(fault)
    return await engine.callback(callback)


def _assert_no_secret_in(flow: fe.Flow) -> None:
    assert flow.error is not None
    for text in (flow.error.message, flow.error.description or "", repr(flow)):
        assert ACCESS not in text and REFRESH not in text


REFUSED: list[Any] = [
    pytest.param(token_body(access_token=...), 200, "application/json", id="no-access-token"),
    pytest.param(token_body(access_token=""), 200, "application/json", id="empty-access-token"),
    pytest.param(token_body(access_token=12345), 200, "application/json", id="numeric-access-token"),
    pytest.param(token_body(token_type=...), 200, "application/json", id="no-token-type"),
    pytest.param(token_body(token_type=None), 200, "application/json", id="null-token-type"),
    pytest.param(token_body(token_type="mac"), 200, "application/json", id="mac-token-type"),
    pytest.param(token_body(token_type="bearer "), 200, "application/json", id="padded-token-type"),
    pytest.param(token_body(expires_in=-1), 200, "application/json", id="negative-expires-in"),
    pytest.param(token_body(expires_in="soon"), 200, "application/json", id="word-expires-in"),
    pytest.param(token_body(expires_in="3600.5"), 200, "application/json", id="decimal-string-expires-in"),
    pytest.param(token_body(expires_in=True), 200, "application/json", id="boolean-expires-in"),
    pytest.param(token_body(expires_in=[3600]), 200, "application/json", id="list-expires-in"),
    pytest.param(token_body(expires_in=10**12), 200, "application/json", id="absurd-expires-in"),
    pytest.param(token_body(refresh_token=7), 200, "application/json", id="numeric-refresh-token"),
    pytest.param(token_body(scope={"a": 1}), 200, "application/json", id="object-scope"),
    pytest.param(token_body(ref=...), 200, "application/json", id="no-account"),
    pytest.param([token_body()], 200, "application/json", id="json-list"),
    pytest.param("null", 200, "application/json", id="json-null"),
    pytest.param('"a string"', 200, "application/json", id="json-string"),
    pytest.param("42", 200, "application/json", id="json-number"),
    pytest.param("", 200, "application/json", id="empty-body"),
    pytest.param('{"access_token": "at-', 200, "application/json", id="truncated-json"),
    pytest.param("<html><body>Sign in</body></html>", 200, "text/html", id="html-200"),
    pytest.param(f"access_token={ACCESS}&token_type=bearer", 200, "text/plain", id="form-encoded-200"),
    pytest.param(b"\xff\xfe\x00garbage".decode("latin-1"), 200, "application/octet-stream", id="bytes-200"),
    pytest.param({"error": "invalid_request", "access_token": ""}, 200, "application/json", id="error-200"),
]


@pytest.mark.parametrize(("body", "status", "content_type"), REFUSED)
async def test_sec8_an_unusable_2xx_token_response_is_refused_and_nothing_is_stored(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, body: object, status: int, content_type: str
) -> None:
    done = await _exchange_with(engine, sandbox, _respond(body, status, content_type))
    assert done.state == "failed"
    assert done.error is not None
    assert done.error.code in ("invalid_token_response", "provider_error")
    assert await engine.tokens() == []
    assert len(sandbox.token_requests()) == 1
    _assert_no_secret_in(done)


@pytest.mark.parametrize(
    ("body", "status", "content_type", "code"),
    [
        ("<html><h1>Bad Gateway</h1></html>", 502, "text/html", "provider_unavailable"),
        ("<html><h1>Oops</h1></html>", 500, "text/html", "provider_unavailable"),
        ("Service Unavailable", 503, "text/plain", "provider_unavailable"),
        ("<html>Forbidden</html>", 403, "text/html", "provider_error"),
        ("<html>Unauthorized</html>", 401, "text/html", "unauthorized"),
        ("not json", 400, "text/plain", "provider_error"),
        ("[1, 2]", 400, "application/json", "provider_error"),
        ('{"error": "invalid_grant"}', 400, "application/json", "invalid_grant"),
        ('{"error": "invalid_client"}', 401, "application/json", "invalid_client"),
        ('{"error": "rate_limit"}', 420, "text/html", "rate_limited"),
        (json.dumps(token_body()), 500, "application/json", "provider_unavailable"),
        (json.dumps(token_body()), 302, "text/html", "provider_error"),
    ],
)
async def test_sec8_an_error_status_with_any_body_is_a_typed_error(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, body: str, status: int, content_type: str, code: str
) -> None:
    done = await _exchange_with(engine, sandbox, _respond(body, status, content_type))
    assert done.state == "failed"
    assert done.error is not None and done.error.code == code
    assert done.error.status == status
    assert await engine.tokens() == []
    _assert_no_secret_in(done)


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(3600, 3600), ("3600", 3600), (3600.5, 3600), (0, 0), (None, None), (..., None)],
    ids=["int", "string", "float", "zero", "null", "absent"],
)
async def test_sec8_expires_in_is_read_sensibly(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, expires_in: object, lifetime: int | None
) -> None:
    done = await _exchange_with(engine, sandbox, _respond(token_body(expires_in=expires_in)))
    assert done.state == "exchanged"
    token = await engine.token_for(done)
    assert token is not None
    if lifetime is None:
        assert token.expires_at is None
    else:
        leeway = min(60, lifetime / 2)
        assert token.expires_at == pytest.approx(token.obtained_at + lifetime - leeway)


@pytest.mark.parametrize("token_type", ["bearer", "Bearer", "BEARER", "bEaReR"])
async def test_sec8_token_type_is_compared_case_insensitively(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, token_type: str
) -> None:
    done = await _exchange_with(engine, sandbox, _respond(token_body(token_type=token_type)))
    assert done.state == "exchanged"


@pytest.mark.parametrize(
    "fault",
    [
        _respond("<html>maintenance</html>", 200, "text/html"),
        _respond(token_body(access_token=...)),
        _respond("[]"),
        _respond(token_body(token_type="mac")),
    ],
    ids=["html", "no-access-token", "json-list", "mac"],
)
async def test_sec8_an_unusable_refresh_response_leaves_the_stored_token_alone(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, fault: Fault
) -> None:
    flow = await engine.start()
    token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
    assert token is not None
    sandbox.settings.faults.add(fault)
    with pytest.raises(fe.ProviderError) as caught:
        await engine.refresh(token)
    assert caught.value.code == "invalid_token_response"
    assert await engine.get_token(token.key) == token
    assert token.access_token not in str(caught.value)


# --- 9: extra fields and narrowed scopes ------------------------------------------------------------------


async def test_sec9_unknown_fields_are_kept_not_fatal(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    body = token_body(ref={"type": "user", "id": 1001}, x_podio={"nested": [1, 2]}, issued_at=1_700_000_000)
    done = await _exchange_with(engine, sandbox, _respond(body))
    assert done.state == "exchanged"
    token = await engine.token_for(done)
    assert token is not None
    assert token.extra == {
        "ref": {"type": "user", "id": 1001},
        "x_podio": {"nested": [1, 2]},
        "issued_at": 1_700_000_000,
    }
    assert isinstance(token.account.id, int)


async def test_sec9_a_narrower_granted_scope_is_reported_to_the_caller(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    sandbox.settings.granted_scope = "user:read"
    flow = await engine.start(scope=["user:read", "space:all", "app:write"])
    done = await engine.callback(await sandbox.consent(flow.authorization_url))
    assert done.state == "exchanged"
    assert done.granted_scope == "user:read"
    assert done.missing_scopes == {"space:all", "app:write"}
    token = await engine.token_for(done)
    assert token is not None and token.scope == "user:read"


async def test_sec9_a_full_grant_reports_nothing_missing(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start(scope="user:read space:all")
    done = await engine.callback(await sandbox.consent(flow.authorization_url))
    assert done.granted_scope == "user:read space:all"
    assert done.missing_scopes == frozenset()
