"""Podio's server-side flow, end to end against the sandbox over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import flowengine as fe
import flowengine._plugins
import flowengine._records
import flowengine._security
import pytest

from tests.conftest import SandboxFixture


async def test_granted_flow_reaches_exchanged_and_stores_the_token(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start(scope="user:read")
    assert flow.state == "redirected"
    query = parse_qs(urlsplit(flow.authorization_url or "").query)
    assert query["client_id"] == [sandbox.client.client_id]
    assert query["scope"] == ["user:read"]
    assert query["response_type"] == ["code"]

    done = await engine.callback(await sandbox.consent(flow.authorization_url))

    assert done.state == "exchanged"
    assert [h.dest for h in done.history] == ["redirected", "authorized", "exchanging", "exchanged"]
    assert done.outcome == "granted"
    assert done.account == fe.AccountRef("user", 1001)
    token = await engine.token_for(done)
    assert token is not None
    assert token.fingerprint == done.token_fingerprint
    assert token.authorization_header().startswith("OAuth2 ")
    assert isinstance(token.account.id, int)
    assert token.extra["ref"] == {"type": "user", "id": 1001}
    assert done.code is None and done.code_verifier is None  # forgotten once exchanged


async def test_the_token_works_against_the_api(engine: fe.AsyncEngine, sandbox: SandboxFixture) -> None:
    flow = await engine.start()
    token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
    assert token is not None
    import httpx

    async with httpx.AsyncClient() as http:
        ok = await http.get(
            f"{sandbox.server.url}/user/status", headers={"Authorization": token.authorization_header()}
        )
        bearer = await http.get(
            f"{sandbox.server.url}/user/status", headers={"Authorization": f"Bearer {token.access_token}"}
        )
    assert ok.status_code == 200
    assert bearer.status_code == 401


async def test_token_request_is_a_json_post_to_v2_with_exactly_the_five_fields(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    await engine.callback(await sandbox.consent(flow.authorization_url))

    [request] = sandbox.token_requests()
    assert request.path == "/oauth/token/v2"
    assert request.content_type == "application/json"
    assert set(request.fields) == {"grant_type", "client_id", "redirect_uri", "client_secret", "code"}
    assert request.fields["grant_type"] == "authorization_code"
    assert request.fields["redirect_uri"] == flow.redirect_uri  # SECURITY.md 10: byte-identical


async def test_denied_flow_keeps_the_providers_description(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    done = await engine.callback(await sandbox.consent(flow.authorization_url, approve=False))

    assert done.state == "denied"
    assert done.error is not None
    assert done.error.code == "access_denied"
    assert done.error.description == "The user denied your request."
    assert done.error.reason == "user_denied"
    assert sandbox.token_requests() == []


async def test_a_wrong_code_fails_with_invalid_grant(engine: fe.AsyncEngine, sandbox: SandboxFixture) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)
    state = parse_qs(urlsplit(callback).query)["state"][0]

    done = await engine.callback({"state": state, "code": "not-a-code"})

    assert done.state == "failed"
    assert done.error is not None and done.error.code == "invalid_grant"
    assert [r.status for r in sandbox.token_requests()] == [400]


async def test_a_used_code_fails_with_invalid_grant(engine: fe.AsyncEngine, sandbox: SandboxFixture) -> None:
    first = await engine.start()
    callback = await sandbox.consent(first.authorization_url)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert (await engine.callback(callback)).state == "exchanged"

    second = await engine.start()
    state = parse_qs(urlsplit(await sandbox.consent(second.authorization_url)).query)["state"][0]
    done = await engine.callback({"state": state, "code": code})

    assert done.state == "failed"
    assert done.error is not None and done.error.code == "invalid_grant"


async def test_repeated_code_takes_the_last_value(engine: fe.AsyncEngine, sandbox: SandboxFixture) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)
    params = parse_qs(urlsplit(callback).query)
    state, code = params["state"][0], params["code"][0]

    done = await engine.callback(f"https://example.test/cb?code=a&state={state}&code={code}")

    assert done.state == "exchanged"
    [request] = sandbox.token_requests()
    assert len(request.fields["code"]) == len(code)


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda q: q.replace("state=", "ignored="), "state_missing"),
        (lambda q: q.replace("state=", "state=x"), "state_unknown"),
    ],
    ids=["missing", "wrong"],
)
async def test_sec3_bad_state_sends_no_token_request(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, mangle: object, code: str
) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)
    with pytest.raises(fe.CallbackError) as caught:
        await engine.callback(mangle(callback))  # type: ignore[operator]
    assert caught.value.code == code
    assert sandbox.token_requests() == []
    stored = await engine.get(flow.id)
    assert stored is not None and stored.state == "redirected"


async def test_sec3_expired_state_sends_no_token_request(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    now = [1_000_000.0]
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=lambda: now[0]
    ) as engine:
        flow = await engine.start()
        callback = await sandbox.consent(flow.authorization_url)
        now[0] += podio_spec.machine.ttl + 1
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback)
        assert caught.value.code == "flow_expired"
        with pytest.raises(fe.CallbackError) as again:
            await engine.callback(callback)
        assert again.value.code == "flow_expired"
        stored = await engine.get(flow.id)
    assert stored is not None and stored.state == "failed"
    assert stored.error is not None and stored.error.code == "flow_expired"
    assert sandbox.token_requests() == []


async def test_sec3_replayed_callback_returns_the_outcome_and_sends_nothing(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)
    first = await engine.callback(callback)
    again = await engine.callback(callback)

    assert again == first
    assert len(sandbox.token_requests()) == 1


async def test_sec3_used_state_with_another_code_is_rejected(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)
    await engine.callback(callback)
    state = parse_qs(urlsplit(callback).query)["state"][0]

    with pytest.raises(fe.CallbackError) as caught:
        await engine.callback({"state": state, "code": "another"})

    assert caught.value.code == "state_used"
    assert len(sandbox.token_requests()) == 1


async def test_sec3_other_sessions_state_is_rejected(engine: fe.AsyncEngine, sandbox: SandboxFixture) -> None:
    flow = await engine.start(session="browser-a")
    callback = await sandbox.consent(flow.authorization_url)
    for session in ("browser-b", None):
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback, session=session)
        assert caught.value.code == "session_mismatch"
    assert sandbox.token_requests() == []
    assert (await engine.callback(callback, session="browser-a")).state == "exchanged"


async def test_sec7_state_without_code_or_error_fails_missing_code(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    state = parse_qs(urlsplit(await sandbox.consent(flow.authorization_url)).query)["state"][0]
    done = await engine.callback({"state": state})
    assert done.state == "failed"
    assert done.error is not None and done.error.code == "missing_code"
    assert sandbox.token_requests() == []


async def test_sec16_hundred_concurrent_callbacks_send_one_token_request(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)

    outcomes = await asyncio.gather(*(engine.callback(callback) for _ in range(100)))

    assert len(sandbox.token_requests()) == 1
    assert {o.state for o in outcomes} == {"exchanged"}
    assert len({o.version for o in outcomes}) == 1


async def test_refresh_returns_a_new_token_and_keeps_the_newest_refresh_token(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
    assert token is not None

    fresh = await engine.refresh(token)

    assert fresh.access_token != token.access_token
    assert fresh.refresh_token != token.refresh_token  # the sandbox rotates by default
    assert fresh.account == token.account
    assert await engine.get_token(token.key) == fresh
    refresh_request = sandbox.token_requests()[-1]
    assert refresh_request.grant_type == "refresh_token"
    assert set(refresh_request.fields) == {"grant_type", "client_id", "client_secret", "refresh_token"}
    # The rotated-out refresh token is dead; the engine kept the newest one, so this works:
    assert (await engine.refresh(fresh)).access_token != fresh.access_token


async def test_refresh_without_rotation_keeps_the_old_refresh_token(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    sandbox.settings.rotate_refresh_tokens = False
    flow = await engine.start()
    token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
    assert token is not None
    fresh = await engine.refresh(token.key)
    assert fresh.refresh_token == token.refresh_token


async def test_sec18_concurrent_refreshes_send_one_request(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
    assert token is not None

    results = await asyncio.gather(*(engine.refresh(token) for _ in range(20)))

    assert len({r.access_token for r in results}) == 1
    assert [r.grant_type for r in sandbox.token_requests()].count("refresh_token") == 1


async def test_sec18_dead_refresh_token_marks_the_grant_dead(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    token = await engine.token_for(await engine.callback(await sandbox.consent(flow.authorization_url)))
    assert token is not None
    sandbox.server.state.reset()  # the sandbox forgets every grant

    with pytest.raises(fe.ProviderError) as caught:
        await engine.refresh(token)
    assert caught.value.code == "invalid_grant"
    stored = await engine.get_token(token.key)
    assert stored is not None and stored.dead
    with pytest.raises(fe.ProviderError):
        await engine.refresh(token.key)
    assert len(sandbox.token_requests()) == 1  # a dead grant is not retried


def test_the_same_flow_through_the_sync_engine(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    with fe.Engine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints) as engine:
        flow = engine.start(scope=["user:read", "space:all"])
        callback = asyncio.run(sandbox.consent(flow.authorization_url))
        done = engine.callback(callback)
        assert done.state == "exchanged"
        token = engine.token_for(done)
        assert token is not None
        assert engine.refresh(token).access_token != token.access_token
        assert [f.id for f in engine.flows(state="exchanged")] == [flow.id]
        assert [t.key for t in engine.tokens()] == [token.key]
    assert parse_qs(urlsplit(flow.authorization_url or "").query)["scope"] == ["user:read space:all"]


async def test_manual_exchange_when_auto_exchange_is_off(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, auto_exchange=False
    ) as engine:
        flow = await engine.start()
        authorized = await engine.callback(await sandbox.consent(flow.authorization_url))
        assert authorized.state == "authorized"
        assert sandbox.token_requests() == []
        assert (await engine.exchange(flow.id)).state == "exchanged"
        assert (await engine.exchange(flow.id)).state == "exchanged"
    assert len(sandbox.token_requests()) == 1


@pytest.mark.parametrize(
    ("ending", "outcome"), [("approve", "granted"), ("deny", "denied"), ("server_error", "failed")]
)
async def test_exchange_returns_every_final_flow_unchanged_and_sends_nothing(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, ending: str, outcome: str
) -> None:
    flow = await engine.start()
    if ending == "server_error":
        state = parse_qs(urlsplit(flow.authorization_url or "").query)["state"][0]
        back = f"{flow.redirect_uri}?error=server_error&state={state}"
    else:
        back = await sandbox.consent(flow.authorization_url, approve=ending == "approve")
    done = await engine.callback(back)
    assert done.outcome == outcome
    sent = len(sandbox.token_requests())

    again = await engine.exchange(flow.id)

    assert again == done
    assert len(sandbox.token_requests()) == sent


async def test_sec10_off_domain_redirect_uri_is_refused_before_any_redirect(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    client = fe.Client("sandbox-client", "x", "https://evil.example/cb", registered_domain="example.com")
    async with fe.AsyncEngine(podio_spec, client=client, endpoints=sandbox.endpoints) as engine:
        with pytest.raises(fe.ConfigError) as caught:
            await engine.start()
        assert caught.value.code == "redirect_uri_invalid"
        assert await engine.flows() == []


def test_endpoint_overrides_must_be_known_and_https_off_loopback(podio_spec: fe.FlowSpec) -> None:
    client = fe.Client("id", "secret", "https://example.com/cb")
    with pytest.raises(fe.ConfigError, match="no endpoint 'tokn'"):
        fe.AsyncEngine(podio_spec, client=client, endpoints={"tokn": "https://x.example/t"})
    with pytest.raises(fe.ConfigError, match="http://"):
        fe.AsyncEngine(podio_spec, client=client, endpoints={"token": "http://staging.example/t"})
    engine = fe.AsyncEngine(podio_spec, client=client, endpoints={"token": "http://[::1]:9/t"})
    assert engine.endpoints["token"] == "http://[::1]:9/t"


async def test_transition_observers_see_every_stored_transition_redacted(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    seen: list[tuple[str, str, str, fe.Flow]] = []

    class Observer:
        @fe.hookimpl
        def flowengine_transition(self, flow: fe.Flow, event: str, source: str, dest: str) -> None:
            seen.append((event, source, dest, flow))

    pm = fe.new_plugin_manager()
    pm.register(Observer())
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, plugin_manager=pm
    ) as engine:
        flow = await engine.start()
        await engine.callback(await sandbox.consent(flow.authorization_url))
    assert [(e, s, d) for e, s, d, _ in seen] == [
        ("start", "", "redirected"),
        ("callback", "redirected", "authorized"),
        ("exchange", "authorized", "exchanging"),
        ("answer", "exchanging", "exchanged"),
    ]
    assert all(f.code is None and f.code_verifier is None for *_, f in seen)
    json.dumps([fe._records.flow_to_dict(f) for *_, f in seen])


def _podio_variant(podio_spec: fe.FlowSpec, **changes: object) -> fe.FlowSpec:
    import copy

    import yaml

    data = yaml.safe_load(open(podio_spec.source, encoding="utf-8"))  # noqa: SIM115
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for part in parents:
            node = node[part]
        node[last] = copy.deepcopy(value)
    return fe.load_spec(data)


async def test_sec4_callback_on_another_providers_path_is_rejected(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    other_spec = _podio_variant(podio_spec, name="podio-eu")
    store = fe.open_store("memory://")
    podio = fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store)
    other = fe.AsyncEngine(other_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store)
    flow = await podio.start()
    callback = await sandbox.consent(flow.authorization_url)
    with pytest.raises(fe.CallbackError) as caught:
        await other.callback(callback)
    assert caught.value.code == "wrong_provider"
    assert sandbox.token_requests() == []
    assert (await podio.callback(callback)).state == "exchanged"


async def test_sec5_issuer_mismatch_is_rejected(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    spec = _podio_variant(podio_spec, issuer="https://podio.com", callback__iss="iss")
    async with fe.AsyncEngine(spec, client=sandbox.client, endpoints=sandbox.endpoints) as engine:
        flow = await engine.start()
        callback = await sandbox.consent(flow.authorization_url)
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback + "&iss=https%3A%2F%2Fevil.example")
        assert caught.value.code == "issuer_mismatch"
        assert sandbox.token_requests() == []
        done = await engine.callback(callback + "&iss=https%3A%2F%2Fpodio.com")
        assert done.state == "exchanged"


async def test_sec2_pkce_s256_end_to_end(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    spec = _podio_variant(
        podio_spec,
        pkce=True,
        authorization__params={
            **podio_spec.authorization.params,
            "code_challenge": "{code_challenge}",
            "code_challenge_method": "{code_challenge_method}",
        },
        grants__authorization_code__params={
            **podio_spec.grants["authorization_code"].params,
            "code_verifier": "{code_verifier}",
        },
    )
    async with fe.AsyncEngine(spec, client=sandbox.client, endpoints=sandbox.endpoints) as engine:
        flow = await engine.start()
        query = parse_qs(urlsplit(flow.authorization_url or "").query)
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43
        done = await engine.callback(await sandbox.consent(flow.authorization_url))
    assert done.state == "exchanged"
    [request] = sandbox.token_requests()
    assert len(request.fields["code_verifier"]) == 43
    assert fe._security.pkce_challenge(request.fields["code_verifier"]) == query["code_challenge"][0]


async def test_sec13_debug_logs_and_errors_hold_no_secret(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    texts: list[str] = []
    flow = await engine.start()
    # The person's browser (played by the sandbox helper) sees the code in its address
    # bar; what is checked is everything the engine and its transport log from here on.
    callback = await sandbox.consent(flow.authorization_url)
    caplog.set_level(logging.DEBUG)
    done = await engine.callback(callback)
    token = await engine.token_for(done)
    assert token is not None
    fresh = await engine.refresh(token)
    for bad in ({"state": "nope", "code": "x"}, callback + "&code=again"):
        try:
            await engine.callback(bad)
        except fe.FlowError as exc:
            texts += [str(exc), repr(exc)]
    texts += [repr(done), repr(token), repr(fresh), repr(engine.client), caplog.text]
    code = parse_qs(urlsplit(callback).query)["code"][0]
    secrets_ = [code, token.access_token, fresh.access_token, token.refresh_token, fresh.refresh_token]
    secrets_.append(sandbox.client.client_secret)
    blob = "\n".join(texts)
    for secret in secrets_:
        assert secret and secret not in blob


async def test_a_token_is_refreshed_only_at_the_token_endpoint_that_issued_it(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    """Two sandboxes issue the same account's tokens: refreshing one at the other is refused, never dead."""
    from flowengine_sandbox.plugin import PodioSandbox
    from flowengine_sandbox.server import SandboxServer
    from flowengine_sandbox.settings import SandboxSettings

    store = fe.open_store("memory://")
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store
    ) as first:
        flow = await first.start()
        token = await first.token_for(await first.callback(await sandbox.consent(flow.authorization_url)))
        assert token is not None
        assert token.token_endpoint == sandbox.endpoints["token"]
    with SandboxServer(SandboxSettings()) as other_server:
        other = PodioSandbox(podio_spec, other_server.url, other_server.settings)
        async with fe.AsyncEngine(
            podio_spec, client=other.client, endpoints=other.endpoints, store=store
        ) as second:
            with pytest.raises(fe.ConfigError) as refused:
                await second.refresh(token.key)
            assert refused.value.code == "token_endpoint_mismatch"
            assert "--sandbox" in refused.value.message
            kept = await second.get_token(token.key)
        assert other_server.state.token_requests() == []
    assert kept is not None
    assert not kept.dead
    assert kept.refresh_token == token.refresh_token
