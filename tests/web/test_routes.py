"""Every route and every outcome of the web frontend, through an in-process ASGI client.

In each refused case the sandbox proves that no token request was sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import flowengine as fe
import pytest
from starlette.types import ASGIApp

from flowengine_memory import MemoryStore
from flowengine_web import create_app
from tests.conftest import SandboxFixture
from tests.web.conftest import ORIGIN, SECRET, Browser, assert_secure_headers, state_of

ROOT = Path(__file__).resolve().parents[2]

# --- home ------------------------------------------------------------------------


async def test_home_lists_every_spec_with_a_try_to_authorize_link(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, make_browser: object
) -> None:
    async with (
        fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints) as one,
        fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints) as two,
    ):
        browser: Browser = make_browser(create_app({"podio": one, "podio-staging": two}, secret_key=SECRET))  # type: ignore[operator]
        page = await browser.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert (
            '<a href="/auth/podio" aria-label="Try to authorize with podio">Try to authorize</a>' in page.text
        )
        assert 'href="/auth/podio-staging"' in page.text
        assert "Podio&#x27;s server-side" in page.text  # the spec's description, escaped
        assert "set-cookie" not in page.headers  # a session starts with a flow, fresh each time
        listing = await browser.get("/", accept="application/json")
        assert listing.json()["specs"] == [
            {"name": "podio", "description": podio_spec.description, "start_url": "/auth/podio"},
            {
                "name": "podio-staging",
                "description": podio_spec.description,
                "start_url": "/auth/podio-staging",
            },
        ]


# --- start -----------------------------------------------------------------------


async def test_start_redirects_to_the_provider_and_binds_the_flow_to_a_session_cookie(
    browser: Browser, sandbox: SandboxFixture, engine: fe.AsyncEngine
) -> None:
    started = await browser.start()
    assert started.status_code == 302
    location = started.headers["location"]
    assert location.startswith(sandbox.server.url + "/oauth/authorize?")
    query = parse_qs(urlsplit(location).query)
    assert query["redirect_uri"] == [f"{ORIGIN}/auth/podio/callback"]
    assert query["client_id"] == ["sandbox-client"]
    cookie = started.headers["set-cookie"]
    assert cookie.startswith("flowengine_session=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= attributes
    assert "secure" not in attributes  # loopback: plain http must keep working
    [flow] = await engine.flows()
    assert flow.state == "redirected" and flow.session_hash is not None
    again = await browser.start()
    assert again.headers["set-cookie"].split(";")[0] != cookie.split(";")[0]  # a fresh session per flow


async def test_off_loopback_the_cookie_is_secure_and_host_prefixed(
    engine: fe.AsyncEngine, make_browser: object
) -> None:
    app = create_app(engine, secret_key=SECRET, base_url=ORIGIN)
    browser: Browser = make_browser(app, base_url="https://app.example")  # type: ignore[operator]
    started = await browser.start()  # the redirect URI is built on base_url
    cookie = started.headers["set-cookie"]
    assert cookie.startswith("__Host-flowengine_session=")
    assert "secure" in cookie.lower()
    assert parse_qs(urlsplit(started.headers["location"]).query)["redirect_uri"] == [
        f"{ORIGIN}/auth/podio/callback"
    ]


async def test_a_start_that_fails_shows_the_code_and_a_retry_link(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, make_browser: object
) -> None:
    class BrokenStore(MemoryStore):
        async def create(self, flow: fe.Flow) -> None:
            raise ConnectionError("the store is down")

    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=BrokenStore()
    ) as broken:
        browser: Browser = make_browser(create_app(broken, secret_key=SECRET))  # type: ignore[operator]
        page = await browser.start()
        assert page.status_code == 503
        assert "<code>store_unavailable</code>" in page.text
        assert '<a href="/auth/podio"' in page.text and ">Retry</a>" in page.text
        assert "the store is down" not in page.text  # internals stay in the log
        answer = await browser.start(accept="application/json")
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "store_unavailable"
    off_domain = fe.Client("sandbox-client", "sandbox-secret", registered_domain="example.com")
    async with fe.AsyncEngine(podio_spec, client=off_domain, endpoints=sandbox.endpoints) as engine:
        browser = make_browser(create_app(engine, secret_key=SECRET))  # type: ignore[operator]
        page = await browser.start()
        assert page.status_code == 500
        assert "<code>redirect_uri_invalid</code>" in page.text


# --- callback: the three outcomes ------------------------------------------------


async def test_success_redirects_to_a_clean_url_that_shows_the_account_and_a_fingerprint(
    browser: Browser, sandbox: SandboxFixture, engine: fe.AsyncEngine
) -> None:
    callback = await browser.authorize()
    first, page = await browser.follow(callback)
    location = first.headers["location"]
    assert location.startswith("/auth/podio/result/")
    assert "code" not in location and "state" not in location
    assert page.status_code == 200
    [flow] = await engine.flows()
    token = await engine.token_for(flow)
    assert token is not None
    assert "<h1>Authorized</h1>" in page.text
    assert "<strong>user:1001</strong>" in page.text  # Podio's ref: who authorized
    assert f"<code>{token.fingerprint}</code>" in page.text
    for secret in (token.access_token, token.refresh_token, parse_qs(urlsplit(callback).query)["code"][0]):
        assert secret and secret not in page.text and secret not in str(first.headers)
    assert len(sandbox.token_requests()) == 1


async def test_denial_shows_the_providers_description_with_a_retry_link(
    browser: Browser, sandbox: SandboxFixture
) -> None:
    _, page = await browser.follow(await browser.authorize(approve=False))
    assert page.status_code == 200
    assert "<h1>Authorization denied</h1>" in page.text
    assert "The user denied your request." in page.text
    assert '<a href="/auth/podio" aria-label="Retry authorizing with podio">Retry</a>' in page.text
    assert sandbox.token_requests() == []


async def test_the_providers_description_is_escaped(browser: Browser, sandbox: SandboxFixture) -> None:
    started = await browser.start()
    hostile = "<script>alert(1)</script><img src=https://evil.example/x>"
    query = urlencode({"state": state_of(started.headers["location"]), "error": "access_denied"})
    _, page = await browser.follow(
        f"/auth/podio/callback?{query}&{urlencode({'error_description': hostile})}"
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=https://evil.example/x&gt;" in page.text
    assert "<script" not in page.text and "<img" not in page.text
    assert sandbox.token_requests() == []


async def test_a_failure_shows_the_error_code_and_a_retry_link(
    browser: Browser, sandbox: SandboxFixture
) -> None:
    sandbox.settings.code_ttl = 0  # the code is dead on arrival: the token endpoint says invalid_grant
    _, page = await browser.follow(await browser.authorize())
    assert "<h1>Authorization failed</h1>" in page.text
    assert "<code>invalid_grant</code>" in page.text
    assert ">Retry</a>" in page.text
    assert len(sandbox.token_requests()) == 1
    started = await browser.start()
    query = urlencode({"state": state_of(started.headers["location"]), "error": "server_error"})
    _, page = await browser.follow(f"/auth/podio/callback?{query}")
    assert "<code>provider_error</code>" in page.text


async def test_a_flow_not_yet_exchanged_shows_a_page_that_checks_again(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, make_browser: object
) -> None:
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, auto_exchange=False
    ) as engine:
        browser: Browser = make_browser(create_app(engine, secret_key=SECRET))  # type: ignore[operator]
        first, page = await browser.follow(await browser.authorize())
        assert "<h1>Authorization in progress</h1>" in page.text
        assert page.headers["refresh"] == "2"
        assert f'href="{first.headers["location"]}"' in page.text
        [flow] = await engine.flows()
        await engine.exchange(flow.id)
        assert "<h1>Authorized</h1>" in (await browser.get(first.headers["location"])).text


# --- callback: refusals ----------------------------------------------------------


async def _refused(browser: Browser, url: str, code: str) -> None:
    first, page = await browser.follow(url)
    assert first.headers["location"] == f"/auth/podio/error/{code}"
    assert page.status_code == 400
    assert f"<code>{code}</code>" in page.text
    assert '<a href="/auth/podio"' in page.text


async def test_a_valid_state_from_another_browser_is_refused(
    browser: Browser, other_browser: Browser, sandbox: SandboxFixture
) -> None:
    callback = await browser.authorize()
    await _refused(other_browser, callback, "session_mismatch")
    assert sandbox.token_requests() == []
    # The refusal changed nothing: the browser that started the flow still finishes it.
    _, page = await browser.follow(callback)
    assert "<h1>Authorized</h1>" in page.text
    assert len(sandbox.token_requests()) == 1


async def test_a_lost_or_forged_cookie_is_a_session_mismatch(
    browser: Browser, sandbox: SandboxFixture
) -> None:
    callback = await browser.authorize()
    real = browser.http.cookies["flowengine_session"]
    browser.http.cookies.clear()
    await _refused(browser, callback, "session_mismatch")
    sid, signature = real.split(".")
    for forged in (f"{sid}.{signature[::-1]}", f"{'A' * 43}.{signature}", sid, "x.y.z", ""):
        browser.http.cookies.set("flowengine_session", forged)
        await _refused(browser, callback, "session_mismatch")
    assert sandbox.token_requests() == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("code=abc", "state_missing"),
        ("", "state_missing"),
        ("code=abc&state=never-issued", "state_unknown"),
        ("code=abc&state=x&state=y%FF", "callback_invalid"),
    ],
)
async def test_a_callback_without_a_usable_state_is_refused(
    browser: Browser, sandbox: SandboxFixture, query: str, code: str
) -> None:
    await browser.start()
    await _refused(browser, f"/auth/podio/callback?{query}", code)
    assert sandbox.token_requests() == []


async def test_a_used_state_with_another_code_is_refused(browser: Browser, sandbox: SandboxFixture) -> None:
    callback = await browser.authorize()
    await browser.follow(callback)
    query = urlencode({"state": state_of(callback), "code": "another-code"})
    await _refused(browser, f"/auth/podio/callback?{query}", "state_used")
    assert len(sandbox.token_requests()) == 1


async def test_a_callback_on_another_specs_path_is_refused(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, make_browser: object
) -> None:
    second = fe.load_spec((ROOT / "specs" / "podio.yaml").read_text().replace("name: podio", "name: podio2"))
    store = MemoryStore()
    async with (
        fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store) as one,
        fe.AsyncEngine(second, client=sandbox.client, endpoints=sandbox.endpoints, store=store) as two,
    ):
        browser: Browser = make_browser(create_app({"podio": one, "podio2": two}, secret_key=SECRET))  # type: ignore[operator]
        callback = await browser.authorize("podio")
        wrong = callback.replace("/auth/podio/callback", "/auth/podio2/callback")
        first, page = await browser.follow(wrong)
        assert first.headers["location"] == "/auth/podio2/error/wrong_provider"
        assert page.status_code == 400
    assert sandbox.token_requests() == []


# --- replays ---------------------------------------------------------------------


async def test_a_callback_reloaded_replayed_or_in_a_second_tab_shows_the_same_outcome(
    browser: Browser, sandbox: SandboxFixture, app: ASGIApp, make_browser: object
) -> None:
    callback = await browser.authorize()
    concurrent = await asyncio.gather(*(browser.get(callback) for _ in range(10)))
    reloads = [await browser.get(callback) for _ in range(3)]
    # A second tab shares the cookie jar: another client with the same cookies.
    tab: Browser = make_browser(app)  # type: ignore[operator]
    tab.http.cookies.update(browser.http.cookies)
    second_tab = await tab.get(callback)
    locations = {r.headers["location"] for r in [*concurrent, *reloads, second_tab]}
    assert len(locations) == 1 and all(r.status_code == 303 for r in [*concurrent, *reloads, second_tab])
    assert "<h1>Authorized</h1>" in (await tab.get(locations.pop())).text
    assert len(sandbox.token_requests()) == 1


async def test_a_denial_replayed_is_still_a_denial(browser: Browser, sandbox: SandboxFixture) -> None:
    callback = await browser.authorize(approve=False)
    pages = [(await browser.follow(callback))[1] for _ in range(3)]
    assert all("<h1>Authorization denied</h1>" in page.text for page in pages)
    assert sandbox.token_requests() == []


# --- results and 404s ------------------------------------------------------------


async def test_a_result_is_shown_only_to_the_session_that_started_the_flow(
    browser: Browser, other_browser: Browser
) -> None:
    first, _ = await browser.follow(await browser.authorize())
    result_url = first.headers["location"]
    assert (await other_browser.get(result_url)).status_code == 404
    await other_browser.get("/")  # now with a session of its own: still not its flow
    assert (await other_browser.get(result_url)).status_code == 404
    assert (await browser.get(result_url)).status_code == 200


async def test_the_first_result_view_reads_nothing_back_and_shows_what_a_reload_shows(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, make_browser: object
) -> None:
    class CountingStore(MemoryStore):
        reads = 0

        async def get(self, flow_id: str) -> fe.Flow | None:
            self.reads += 1
            return await super().get(flow_id)

    store = CountingStore()
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store
    ) as engine:
        app = create_app(engine, secret_key=SECRET)
        browser: Browser = make_browser(app)  # type: ignore[operator]
        other: Browser = make_browser(app)  # type: ignore[operator]
        for approve, title in ((True, "Authorized"), (False, "Authorization denied")):
            done = await browser.get(await browser.authorize(approve=approve))
            result_url = done.headers["location"]
            await other.start()  # a session of its own, asking first: still not its flow
            assert (await other.get(result_url)).status_code == 404
            reads = store.reads
            first = await browser.get(result_url, accept="application/json")
            assert store.reads == reads  # the flow the callback just finished, not read back
            reload = await browser.get(result_url, accept="application/json")
            assert store.reads == reads + 1
            assert first.json() == reload.json() and first.json()["outcome"] in ("success", "denied")
            page, page_again = await browser.get(result_url), await browser.get(result_url)
            assert f"<h1>{title}</h1>" in page.text and page.text == page_again.text


@pytest.mark.parametrize(
    "path",
    [
        "/auth/nosuch",
        "/auth/nosuch/callback?code=abc&state=def",
        "/auth/nosuch/result/abc",
        "/auth",
        "/auth/",
        "/auth/podio/result/never-was",
        "/auth/podio/result/..%2F..%2Fetc",
        "/auth/podio/error/Not-A-Code",
        "/nope",
    ],
)
async def test_unknown_specs_and_paths_are_404(browser: Browser, sandbox: SandboxFixture, path: str) -> None:
    await browser.get("/")
    page = await browser.get(path)
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text
    assert_secure_headers(page)
    answer = await browser.get(path, accept="application/json")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert sandbox.token_requests() == []


async def test_a_route_answers_get_only(browser: Browser) -> None:
    page = await browser.http.post("/auth/podio")
    assert page.status_code == 405
    assert "<code>http_405</code>" in page.text
    assert_secure_headers(page)


async def test_an_error_page_by_code_shows_a_sentence_and_the_code(browser: Browser) -> None:
    page = await browser.get("/auth/podio/error/flow_expired")
    assert page.status_code == 400
    assert "took too long" in page.text and "<code>flow_expired</code>" in page.text
    assert (await browser.get("/auth/podio/error/store_unavailable")).status_code == 503
    unknown = await browser.get("/auth/podio/error/something_new")
    assert unknown.status_code == 400 and "<code>something_new</code>" in unknown.text


# --- JSON ------------------------------------------------------------------------


async def test_json_variants_of_both_routes(browser: Browser, sandbox: SandboxFixture) -> None:
    started = await browser.start(accept="application/json")
    assert started.status_code == 200
    body = started.json()
    assert set(body) == {"flow_id", "spec", "authorization_url", "expires_at", "result_url"}
    assert body["result_url"] == f"/auth/podio/result/{body['flow_id']}"
    assert "flowengine_session" in started.headers["set-cookie"]
    callback = await sandbox.consent(body["authorization_url"])
    finished = await browser.get(callback, accept="application/json, text/plain, */*")
    assert finished.status_code == 200
    outcome = finished.json()
    assert outcome["outcome"] == "success" and outcome["state"] == "exchanged"
    assert outcome["flow_outcome"] == "granted"  # the engine's word beside the page's
    assert outcome["account"] == {"type": "user", "id": 1001}
    assert outcome["token_fingerprint"].startswith("sha256:")
    assert outcome["error"] is None and outcome["retry_url"] is None
    assert (await browser.get(body["result_url"], accept="application/json")).json() == outcome
    replay = await browser.get(callback, accept="application/json")
    assert replay.json() == outcome
    assert len(sandbox.token_requests()) == 1

    denied = await browser.get(await browser.authorize(approve=False), accept="application/json")
    assert (denied.json()["outcome"], denied.json()["flow_outcome"]) == ("denied", "denied")
    assert denied.json()["error"]["description"] == "The user denied your request."
    assert denied.json()["retry_url"] == "/auth/podio"

    refused = await browser.get("/auth/podio/callback?code=a&state=b", accept="application/json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "state_unknown"
    assert refused.json()["retry_url"] == "/auth/podio"
    for response in (started, finished, refused):
        assert_secure_headers(response)


async def test_security_headers_are_on_every_response(browser: Browser) -> None:
    responses = [await browser.get("/"), await browser.start()]
    callback = await browser.sandbox.consent(responses[-1].headers["location"])
    first, page = await browser.follow(callback)
    responses += [first, page, await browser.get("/auth/podio/error/state_unknown"), await browser.get("/x")]
    for response in responses:
        assert_secure_headers(response)
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy and "unsafe" not in policy
    # No third-party (or any) resource on a page: no src=, no stylesheet link.
    for response in (responses[0], page):
        assert " src=" not in response.text and "<link" not in response.text
