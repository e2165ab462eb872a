"""The host app's hooks: on_token (once per flow), success_url, render."""

from __future__ import annotations

import asyncio

import flowengine as fe
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from flowengine_memory import MemoryStore
from flowengine_web import Page, create_app
from tests.conftest import SandboxFixture
from tests.web.conftest import SECRET, Browser, assert_secure_headers


async def test_on_token_runs_once_however_often_the_callback_arrives(
    engine: fe.AsyncEngine, make_browser: object, sandbox: SandboxFixture
) -> None:
    seen: list[tuple[str, str, str]] = []

    async def on_token(request: Request, flow: fe.Flow, token: fe.Token) -> None:
        await asyncio.sleep(0.01)  # a slow host: concurrent replays must not run it again
        seen.append((request.url.path, flow.id, token.fingerprint))

    browser: Browser = make_browser(create_app(engine, secret_key=SECRET, on_token=on_token))  # type: ignore[operator]
    callback = await browser.authorize()
    await asyncio.gather(*(browser.get(callback) for _ in range(10)))
    for _ in range(3):
        await browser.follow(callback)
    [flow] = await engine.flows()
    assert seen == [("/auth/podio/callback", flow.id, flow.token_fingerprint)]
    await browser.follow(await browser.authorize(approve=False))  # a denial has no token
    assert len(seen) == 1
    assert len(sandbox.token_requests()) == 1


async def test_on_token_runs_once_across_workers_sharing_a_store(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, make_browser: object
) -> None:
    store = MemoryStore()  # two workers' engines, one store (as with Redis or PostgreSQL)
    calls: list[str] = []
    async with (
        fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store) as a,
        fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=store) as b,
    ):
        apps = [create_app(e, secret_key=SECRET, on_token=lambda r, f, t: calls.append(f.id)) for e in (a, b)]
        worker_a: Browser = make_browser(apps[0])  # type: ignore[operator]
        worker_b: Browser = make_browser(apps[1])  # type: ignore[operator]
        callback = await worker_a.authorize()
        worker_b.http.cookies.update(worker_a.http.cookies)  # one browser, behind a load balancer
        await asyncio.gather(worker_a.get(callback), worker_b.get(callback), worker_b.get(callback))
        assert len(calls) == 1
    assert len(sandbox.token_requests()) == 1


async def test_a_failing_on_token_shows_an_error_and_runs_again_on_reload(
    engine: fe.AsyncEngine, make_browser: object, sandbox: SandboxFixture, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[str] = []

    def on_token(request: Request, flow: fe.Flow, token: fe.Token) -> None:
        attempts.append(flow.id)
        if len(attempts) == 1:
            raise RuntimeError("the host's database is down")

    browser: Browser = make_browser(create_app(engine, secret_key=SECRET, on_token=on_token))  # type: ignore[operator]
    callback = await browser.authorize()
    first, page = await browser.follow(callback)
    assert first.headers["location"] == "/auth/podio/error/token_hook_failed"
    assert page.status_code == 500 and "could not save the result" in page.text
    assert "the on_token hook failed" in caplog.text
    _, page = await browser.follow(callback)
    assert "<h1>Authorized</h1>" in page.text
    assert len(attempts) == 2
    await browser.follow(callback)
    assert len(attempts) == 2
    assert len(sandbox.token_requests()) == 1


async def test_on_token_is_not_run_for_a_callback_replayed_long_after(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, make_browser: object
) -> None:
    now = [1_800_000_000.0]
    calls: list[str] = []
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=lambda: now[0]
    ) as engine:
        app = create_app(engine, secret_key=SECRET, on_token=lambda r, f, t: calls.append(f.id))
        browser: Browser = make_browser(app)  # type: ignore[operator]
        callback = await browser.authorize()
        # The flow is exchanged by another frontend (the engine directly), then replayed here later.
        await engine.callback(callback, session=browser.http.cookies["flowengine_session"].split(".")[0])
        now[0] += 7200
        _, page = await browser.follow(callback)
        assert "<h1>Authorized</h1>" in page.text
        assert calls == []


async def test_success_url_sends_the_person_on_after_success_only(
    engine: fe.AsyncEngine, make_browser: object
) -> None:
    async def success_url(request: Request, flow: fe.Flow) -> str:
        return f"/dashboard?connected={flow.account}"

    browser: Browser = make_browser(create_app(engine, secret_key=SECRET, success_url=success_url))  # type: ignore[operator]
    callback = await browser.authorize()
    for _ in range(2):  # a reload goes to the same place
        first = await browser.get(callback)
        assert first.status_code == 303 and first.headers["location"] == "/dashboard?connected=user:1001"
    # The JSON variant still answers with the outcome.
    assert (await browser.get(callback, accept="application/json")).json()["outcome"] == "success"
    denied = await browser.get(await browser.authorize(approve=False))
    assert denied.headers["location"].startswith("/auth/podio/result/")


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "http://127.0.0.1:9/x"]
)
async def test_success_url_must_stay_on_this_origin(
    engine: fe.AsyncEngine, make_browser: object, target: str
) -> None:
    app = create_app(engine, secret_key=SECRET, success_url=lambda request, flow: target)
    browser: Browser = make_browser(app, raise_app_exceptions=False)  # type: ignore[operator]
    page = await browser.get(await browser.authorize())
    assert page.status_code == 500
    assert "evil" not in page.headers.get("location", "")
    assert_secure_headers(page)


async def test_success_url_may_be_absolute_on_the_same_origin(
    engine: fe.AsyncEngine, make_browser: object
) -> None:
    app = create_app(
        engine, secret_key=SECRET, success_url=lambda request, flow: "http://127.0.0.1:8000/home"
    )
    browser: Browser = make_browser(app)  # type: ignore[operator]
    assert (await browser.get(await browser.authorize())).headers["location"] == "http://127.0.0.1:8000/home"


async def test_render_draws_any_page_and_falls_back_to_the_default(
    engine: fe.AsyncEngine, make_browser: object
) -> None:
    pages: list[Page] = []

    async def render(request: Request, page: Page) -> Response | str | None:
        pages.append(page)
        if page.kind == "success":
            return f"<p>Welcome, {page.account}! ({page.token_fingerprint})</p>"
        if page.kind == "denied":
            return PlainTextResponse(
                "no?", status_code=page.status_code, headers={"Cache-Control": "private"}
            )
        return None

    browser: Browser = make_browser(create_app(engine, secret_key=SECRET, render=render))  # type: ignore[operator]
    _, success = await browser.follow(await browser.authorize())
    assert success.text.startswith("<p>Welcome, user:1001! (sha256:")
    assert success.headers["content-type"].startswith("text/html")
    assert_secure_headers(success)  # a string is wrapped with the frontend's headers
    _, denied = await browser.follow(await browser.authorize(approve=False))
    assert denied.text == "no?"
    assert denied.headers["cache-control"] == "private"  # the host's own headers win
    assert denied.headers["referrer-policy"] == "no-referrer"  # the rest are added
    home = await browser.get("/")
    assert "Try to authorize" in home.text
    assert [p.kind for p in pages] == ["success", "denied", "home"]
    assert pages[0].flow is not None and pages[0].retry_url is None
    assert pages[1].error is not None and pages[1].error.code == "access_denied"
    assert pages[1].retry_url == "/auth/podio"


async def test_a_failing_renderer_gets_the_default_error_page(
    engine: fe.AsyncEngine, make_browser: object
) -> None:
    def render(request: Request, page: Page) -> str:
        raise RuntimeError("template not found")

    app = create_app(engine, secret_key=SECRET, render=render)
    browser: Browser = make_browser(app, raise_app_exceptions=False)  # type: ignore[operator]
    page = await browser.get("/")
    assert page.status_code == 500
    assert "<code>internal_error</code>" in page.text
    assert "template not found" not in page.text
    assert_secure_headers(page)
