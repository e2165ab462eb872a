"""SECURITY.md 3-7: callbacks that must not be acted on are rejected, and nothing is sent.

Every rejection is a ``CallbackError`` with its own code; the stored flow is left
as it was and the sandbox's record shows that no token request reached it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlencode

import flowengine as fe
import httpx
import pytest
from flowengine.testing import FakeClock

from flowengine_memory import MemoryStore
from flowengine_web import create_app
from tests.conftest import SandboxFixture
from tests.security.helpers import (
    assert_nothing_sent,
    podio_variant,
    query_of,
)

WEB_SECRET = "security-tests-secret-key-0123456789"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quoted" \x1b]0;pwned\x07\x1b[2J'


async def _pending(engine: fe.AsyncEngine, sandbox: SandboxFixture, **start: str) -> tuple[fe.Flow, str]:
    flow = await engine.start(**start)
    return flow, await sandbox.consent(flow.authorization_url)


async def _assert_untouched(engine: fe.AsyncEngine, flow: fe.Flow) -> None:
    stored = await engine.get(flow.id)
    assert stored is not None
    assert (stored.state, stored.version) == ("redirected", flow.version)


# --- 3: missing, unknown, expired, used, other session's state ------------------------------------


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda q: {k: v for k, v in q.items() if k != "state"}, "state_missing"),
        (lambda q: {**q, "state": ""}, "state_missing"),
        (lambda q: {**q, "state": q["state"] + "x"}, "state_unknown"),
        (lambda q: {**q, "state": secrets.token_urlsafe(32)}, "state_unknown"),
    ],
    ids=["absent", "empty", "altered", "never-issued"],
)
async def test_sec3_missing_or_unknown_state_is_rejected(
    engine: fe.AsyncEngine,
    sandbox: SandboxFixture,
    mangle: Callable[[dict[str, str]], dict[str, str]],
    code: str,
) -> None:
    flow, callback = await _pending(engine, sandbox)
    with pytest.raises(fe.CallbackError) as caught:
        await engine.callback(mangle(query_of(callback)))
    assert caught.value.code == code
    await _assert_untouched(engine, flow)
    assert_nothing_sent(sandbox)


async def test_sec3_expired_state_is_rejected(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    clock = FakeClock()
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=clock
    ) as engine:
        flow, callback = await _pending(engine, sandbox)
        clock.advance(600)
        for _ in range(2):  # expired, then expired again (not "used")
            with pytest.raises(fe.CallbackError) as caught:
                await engine.callback(callback)
            assert caught.value.code == "flow_expired"
        stored = await engine.get(flow.id)
    assert stored is not None and stored.state == "failed"
    assert stored.error is not None and stored.error.code == "flow_expired"
    assert_nothing_sent(sandbox)


async def test_sec3_purged_state_is_unknown(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    clock = FakeClock()
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=clock
    ) as engine:
        _flow, callback = await _pending(engine, sandbox)
        clock.advance(601)
        assert await engine.purge() == 1
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback)
    assert caught.value.code == "state_unknown"
    assert_nothing_sent(sandbox)


async def test_sec3_used_state_with_another_code_is_rejected(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    _flow, callback = await _pending(engine, sandbox)
    denied = await engine.callback({**query_of(callback), "code": "", "error": "access_denied"})
    assert denied.state == "denied"
    for replay in ({**query_of(callback)}, {"state": query_of(callback)["state"], "code": "other"}):
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(replay)
        assert caught.value.code == "state_used"
    assert_nothing_sent(sandbox)


async def test_sec3_other_sessions_state_is_rejected(engine: fe.AsyncEngine, sandbox: SandboxFixture) -> None:
    flow, callback = await _pending(engine, sandbox, session="browser-a")
    for session in ("browser-b", None, ""):
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback, session=session)
        assert caught.value.code == "session_mismatch"
    await _assert_untouched(engine, flow)
    assert_nothing_sent(sandbox)
    assert (await engine.callback(callback, session="browser-a")).state == "exchanged"


# --- 4: a callback on another provider's path --------------------------------------------------------


async def test_sec4_callback_of_one_spec_delivered_to_another_specs_engine_is_rejected(
    sandbox: SandboxFixture,
) -> None:
    store = MemoryStore()
    other_spec = podio_variant(lambda d: d.update(name="podio-b"))
    async with (
        fe.AsyncEngine("podio", client=sandbox.client, endpoints=sandbox.endpoints, store=store) as a,
        fe.AsyncEngine(other_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store) as b,
    ):
        flow, callback = await _pending(a, sandbox)
        with pytest.raises(fe.CallbackError) as caught:
            await b.callback(callback)
        assert caught.value.code == "wrong_provider"
        await _assert_untouched(a, flow)
        assert_nothing_sent(sandbox)
        assert (await a.callback(callback)).state == "exchanged"


async def test_sec4_callback_of_another_client_is_rejected_before_its_code_goes_anywhere(
    sandbox: SandboxFixture,
) -> None:
    store = MemoryStore()
    other_client = fe.Client("another-client", "another-secret", sandbox.client.redirect_uri)
    async with (
        fe.AsyncEngine("podio", client=sandbox.client, endpoints=sandbox.endpoints, store=store) as a,
        fe.AsyncEngine("podio", client=other_client, endpoints=sandbox.endpoints, store=store) as b,
    ):
        flow, callback = await _pending(a, sandbox)
        with pytest.raises(fe.CallbackError) as caught:
            await b.callback(callback)
        assert caught.value.code == "wrong_provider"
        await _assert_untouched(a, flow)
        assert_nothing_sent(sandbox)


async def test_sec4_callback_of_another_tenants_endpoints_is_rejected_before_its_code_goes_anywhere() -> None:
    """Engines of one spec whose endpoints a tenant fills differently never finish each other's flows."""
    from flowengine.testing import MockTransport, json_response

    spec = fe.load_spec(
        {
            "name": "tenanted",
            "connection": {"subdomain": {"pattern": "[a-z0-9-]+"}},
            "endpoints": {
                "authorize": "https://{subdomain}.example.com/oauth/authorize",
                "token": "https://{subdomain}.example.com/oauth/token",
            },
            "authorization": {
                "params": {"client_id": "{client_id}", "redirect_uri": "{redirect_uri}", "state": "{state}"}
            },
            "grants": {
                "authorization_code": {"params": {"code": "{code}", "redirect_uri": "{redirect_uri}"}}
            },
        }
    )
    sent: list[fe.HttpRequest] = []

    def provider(request: fe.HttpRequest) -> fe.HttpResponse:
        sent.append(request)
        return json_response({"access_token": "at", "token_type": "bearer"})

    store = MemoryStore()
    client = fe.Client("cid", "secret", "https://app.example/cb")
    staging = {"token": "https://{subdomain}.staging.example.com/oauth/token"}
    async with (
        fe.AsyncEngine(spec, client=client, store=store, transport=MockTransport(provider)) as a,
        fe.AsyncEngine(
            spec, client=client, store=store, transport=MockTransport(provider), endpoints=staging
        ) as b,
    ):
        flow = await a.start(connection={"subdomain": "acme"})
        callback = {"code": "c0de", "state": query_of(flow.authorization_url or "")["state"]}
        with pytest.raises(fe.CallbackError) as caught:
            await b.callback(callback)
        assert caught.value.code == "endpoints_mismatch"
        await _assert_untouched(a, flow)
        assert sent == []
        done = await a.callback(callback)
        assert done.outcome == "granted"
        assert [r.url for r in sent] == ["https://acme.example.com/oauth/token"]


@pytest.fixture
async def two_provider_site(sandbox: SandboxFixture) -> AsyncIterator[httpx.AsyncClient]:
    """A web app serving two specs on one store, and a browser for it."""
    store = MemoryStore()
    other_spec = podio_variant(lambda d: d.update(name="podio-b"))
    async with (
        fe.AsyncEngine("podio", client=sandbox.client, endpoints=sandbox.endpoints, store=store) as a,
        fe.AsyncEngine(other_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store) as b,
    ):
        app = create_app({"podio": a, "podio-b": b}, secret_key=WEB_SECRET)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as browser:
            yield browser


async def test_sec4_web_callback_on_another_providers_path_is_rejected(
    two_provider_site: httpx.AsyncClient, sandbox: SandboxFixture
) -> None:
    browser = two_provider_site
    started = await browser.get("/auth/podio")
    callback = await sandbox.consent(started.headers["location"])
    wrong = await browser.get(f"/auth/podio-b/callback?{urlencode(query_of(callback))}")
    assert wrong.status_code == 303
    assert wrong.headers["location"] == "/auth/podio-b/error/wrong_provider"
    assert_nothing_sent(sandbox)
    right = await browser.get(f"/auth/podio/callback?{urlencode(query_of(callback))}")
    assert right.status_code == 303 and "/result/" in right.headers["location"]


# --- 5: the issuer (RFC 9207) ------------------------------------------------------------------------


def _with_issuer(required: bool) -> fe.FlowSpec:
    def change(data: dict[str, object]) -> None:
        data["issuer"] = "https://podio.com"
        data["callback"]["iss"] = "iss"  # type: ignore[index]
        data["callback"]["iss_required"] = required  # type: ignore[index]

    return podio_variant(change)


@pytest.mark.parametrize(
    ("required", "iss"),
    [
        (False, "https://evil.example"),
        (False, "https://podio.com/"),
        (False, "https://PODIO.com"),
        (True, "https://evil.example"),
        (True, None),
        (True, ""),
    ],
)
async def test_sec5_a_different_or_missing_issuer_is_rejected(
    sandbox: SandboxFixture, required: bool, iss: str | None
) -> None:
    async with fe.AsyncEngine(
        _with_issuer(required), client=sandbox.client, endpoints=sandbox.endpoints
    ) as engine:
        flow, callback = await _pending(engine, sandbox)
        params = query_of(callback) | ({} if iss is None else {"iss": iss})
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(params)
        assert caught.value.code == "issuer_mismatch"
        await _assert_untouched(engine, flow)
    assert_nothing_sent(sandbox)


@pytest.mark.parametrize("required", [False, True])
async def test_sec5_the_right_issuer_is_accepted(sandbox: SandboxFixture, required: bool) -> None:
    async with fe.AsyncEngine(
        _with_issuer(required), client=sandbox.client, endpoints=sandbox.endpoints
    ) as engine:
        _flow, callback = await _pending(engine, sandbox)
        done = await engine.callback(query_of(callback) | {"iss": "https://podio.com"})
    assert done.state == "exchanged"


async def test_sec5_an_error_callback_from_another_issuer_is_rejected_too(sandbox: SandboxFixture) -> None:
    async with fe.AsyncEngine(
        _with_issuer(False), client=sandbox.client, endpoints=sandbox.endpoints
    ) as engine:
        flow, _callback = await _pending(engine, sandbox)
        state = query_of(flow.authorization_url or "")["state"]
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback({"state": state, "error": "access_denied", "iss": "https://evil.example"})
        assert caught.value.code == "issuer_mismatch"
        await _assert_untouched(engine, flow)


# --- 6: repeated parameters ------------------------------------------------------------------------------


async def test_sec6_podio_takes_the_last_of_repeated_parameters(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    assert engine.spec.callback.repeated == "last"
    flow, callback = await _pending(engine, sandbox)
    real = query_of(callback)
    other = await engine.start()
    decoy_state = query_of(other.authorization_url or "")["state"]
    query = f"state={decoy_state}&code=decoy&state={real['state']}&code={real['code']}"
    done = await engine.callback("https://127.0.0.1/flowengine/callback?" + query)
    assert done.id == flow.id and done.state == "exchanged"
    [request] = sandbox.token_requests()
    assert request.fields["code"] == real["code"]


@pytest.mark.parametrize("name", ["state", "code", "error", "error_description"])
async def test_sec6_reject_refuses_a_repeated_parameter(sandbox: SandboxFixture, name: str) -> None:
    strict = podio_variant(lambda d: d["callback"].update(repeated="reject"))
    async with fe.AsyncEngine(strict, client=sandbox.client, endpoints=sandbox.endpoints) as engine:
        flow, callback = await _pending(engine, sandbox)
        present = query_of(callback)
        repeat = f"&{name}={present[name]}" if name in present else f"&{name}=x&{name}=y"
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback + repeat)
        assert caught.value.code == "repeated_parameter"
        await _assert_untouched(engine, flow)
    assert_nothing_sent(sandbox)


def test_sec6_reject_is_the_default() -> None:
    spec = podio_variant(lambda d: d["callback"].pop("repeated"))
    assert spec.callback.repeated == "reject"


# --- 7: no code and no error; error callbacks; escaping ----------------------------------------------


async def test_sec7_valid_state_without_code_or_error_is_missing_code(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow, callback = await _pending(engine, sandbox)
    done = await engine.callback({"state": query_of(callback)["state"], "code": ""})
    assert done.id == flow.id and done.state == "failed"
    assert done.error is not None and done.error.code == "missing_code"
    assert_nothing_sent(sandbox)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda q: {**q, "state": q["state"] + "x"}, "state_unknown"),
        (lambda q: {k: v for k, v in q.items() if k != "state"}, "state_missing"),
    ],
    ids=["unknown", "missing"],
)
async def test_sec7_an_error_callback_is_checked_for_state_too(
    engine: fe.AsyncEngine,
    sandbox: SandboxFixture,
    change: Callable[[dict[str, str]], dict[str, str]],
    code: str,
) -> None:
    flow = await engine.start()
    denial = query_of(await sandbox.consent(flow.authorization_url, approve=False))
    assert denial["error"] == "access_denied"
    with pytest.raises(fe.CallbackError) as caught:
        await engine.callback(change(denial))
    assert caught.value.code == code
    await _assert_untouched(engine, flow)
    assert_nothing_sent(sandbox)


async def test_sec7_an_error_callback_from_another_session_is_rejected(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start(session="browser-a")
    denial = await sandbox.consent(flow.authorization_url, approve=False)
    with pytest.raises(fe.CallbackError) as caught:
        await engine.callback(denial, session="browser-b")
    assert caught.value.code == "session_mismatch"
    await _assert_untouched(engine, flow)


async def test_sec7_error_description_is_escaped_on_the_web_page(
    two_provider_site: httpx.AsyncClient, sandbox: SandboxFixture
) -> None:
    browser = two_provider_site
    started = await browser.get("/auth/podio")
    state = query_of(started.headers["location"])["state"]
    query = urlencode({"state": state, "error": "access_denied", "error_description": HOSTILE})
    redirected = await browser.get(f"/auth/podio/callback?{query}")
    assert redirected.status_code == 303
    page = await browser.get(redirected.headers["location"])
    assert page.status_code == 200
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text
    assert "<script>" not in page.text and "<img" not in page.text
    as_json = await browser.get(redirected.headers["location"], headers={"accept": "application/json"})
    assert as_json.json()["error"]["description"] == HOSTILE  # JSON carries it as data, not markup
    assert_nothing_sent(sandbox)


async def test_sec7_error_description_is_escaped_in_the_terminal(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path / 'cli.db'}"
    async with fe.AsyncEngine(
        "podio", client=fe.Client("cid", "secret", "https://app.example.com/cb"), store=store
    ) as engine:
        flow = await engine.start()
        state = query_of(flow.authorization_url or "")["state"]
        denied = await engine.callback(
            {"state": state, "error": "access_denied", "error_description": HOSTILE}
        )
    # "--": a flow id is URL-safe base64 and may start with "-", which click would read as an option.
    shown = _flowengine("flows", "show", "--", denied.id, env={"FLOWENGINE_STORE": store})
    assert shown.returncode == 0, shown.stderr
    assert "access_denied" in shown.stdout
    assert not any(c in shown.stdout for c in "\x1b\x07\x9b"), repr(shown.stdout)


def _flowengine(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The ``flowengine`` command, run as a person runs it."""
    return subprocess.run(
        [sys.executable, "-c", "from flowengine.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
