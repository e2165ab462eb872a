"""The operator page in a real browser: Playwright driving Debian's Chromium, as an operator would.

The store holds the mix of tests/support/mix.py (granted, denied, failed, expired and
pending flows, a dead grant). The browser is refused without the operator secret, signs
in, and every number it reads (from the page's ``data-`` attributes, which carry what the
text says) is checked against the store's own counts. A new flow then shows up without a
reload; the dead grant's link starts a new login; the page works with JavaScript off.
Screenshots go to a pytest temp dir (or ``$FLOWENGINE_WEB_SCREENSHOTS``), paths printed.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import flowengine as fe
import pytest

from flowengine_sandbox.server import SandboxServer
from flowengine_web import WebServer, create_app
from tests.support.mix import Mix, clock_an_hour_back, make_mix
from tests.web.conftest import SECRET
from tests.web.test_browser import CHROMIUM, CHROMIUM_ARGS, Tab, _unavailable

# Slow lane: Chromium.
pytestmark = pytest.mark.slow

OPERATOR_SECRET = "operator-secret-for-the-browser-0123"
_T = TypeVar("_T")


def run_async(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to its end on a loop of its own (Playwright's sync API holds this thread's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test: {reason} (CI=true: .ci/run installs it)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("FLOWENGINE_WEB_SCREENSHOTS")
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        return Path(configured)
    return tmp_path_factory.mktemp("operator-screenshots")


class Provider:
    """The session's sandbox, as the mix needs it."""

    def __init__(self, server: SandboxServer, emulator: fe.Sandbox) -> None:
        self.server, self.emulator = server, emulator

    async def consent(self, url: str | None, *, approve: bool = True) -> str:
        assert url is not None
        return await self.emulator.consent(url, approve=approve)

    def forget_grants(self) -> None:
        self.server.state.reset()


@pytest.fixture
def site(
    _sandbox_server: SandboxServer, podio_spec: fe.FlowSpec, tmp_path: Path
) -> Iterator[tuple[Any, ...]]:
    """The mix in a SQLite file, and the frontend serving it with the operator page (refreshing every 1 s)."""
    _sandbox_server.state.reset()
    url = f"sqlite://{tmp_path}/operator.db"
    with fe.open_sandbox(podio_spec, _sandbox_server.url) as emulator:

        async def fill() -> Mix:
            clock = clock_an_hour_back()
            async with fe.AsyncEngine(
                podio_spec, client=emulator.client, endpoints=emulator.endpoints, store=url, clock=clock
            ) as engine:
                return await make_mix(engine, Provider(_sandbox_server, emulator), clock)

        mix = run_async(fill())
        engine = fe.AsyncEngine(podio_spec, client=emulator.client, endpoints=emulator.endpoints, store=url)
        app = create_app(
            engine, secret_key=SECRET, operator_secret=OPERATOR_SECRET, operator_refresh=1, close_engines=True
        )
        with WebServer(app) as server:
            yield server, url, mix, emulator


def store_numbers(url: str) -> tuple[fe.FlowCounts, fe.TokenCounts]:
    async def read() -> tuple[fe.FlowCounts, fe.TokenCounts]:
        store = fe.open_store(url)
        try:
            now = time.time()
            return await store.flow_counts(since=now - 86400), await store.token_counts(now=now, within=7200)
        finally:
            await store.aclose()

    return run_async(read())


def sign_in(tab: Tab, base: str, secret: str) -> None:
    tab.page.goto(base + "/operator")
    tab.page.get_by_label("Operator secret").fill(secret)
    tab.page.get_by_role("button", name="Sign in").click()


def test_the_page_refuses_whoever_lacks_the_secret(
    chromium: Any, screenshots: Path, site: tuple[Any, ...]
) -> None:
    server = site[0]
    tab = Tab(chromium, screenshots)
    try:
        response = tab.page.goto(server.url + "/operator")
        assert response is not None and response.status == 403
        assert tab.heading() == "Operator sign-in"
        assert tab.page.locator("[data-spec]").count() == 0
        tab.shot("operator-1-sign-in")
        sign_in(tab, server.url, "not-the-operator-secret")
        assert tab.page.get_by_role("alert").inner_text() == "That is not the operator secret."
        assert tab.page.locator("[data-spec]").count() == 0
        assert tab.page.goto(server.url + "/operator/live").status == 403  # type: ignore[union-attr]
        tab.assert_nothing_third_party(server.url)
    finally:
        tab.close()


def _count(tab: Tab, selector: str, attribute: str = "data-count") -> int:
    value = tab.page.locator(selector).first.get_attribute(attribute)
    assert value is not None, selector
    return int(value)


def test_the_operator_reads_the_stores_numbers_live(
    chromium: Any, screenshots: Path, site: tuple[Any, ...]
) -> None:
    server, url, mix, emulator = site
    flows, tokens = store_numbers(url)
    tab = Tab(chromium, screenshots)
    try:
        sign_in(tab, server.url, OPERATOR_SECRET)
        tab.page.wait_for_url(re.compile(r".*/operator$"))
        assert tab.heading() == "Operator"

        # The machine: flows waiting in each pending state, flows per edge in the window.
        stored = {c.state: c.count for c in flows.states}
        for state in ("redirected", "authorized", "exchanging"):
            assert _count(tab, f'[data-state="{state}"]', "data-pending") == stored.get(state, 0)
        assert _count(tab, '[data-state="redirected"]', "data-pending") == mix.pending
        taken: dict[str, int] = {}
        for step in flows.steps:
            key = f"{step.source} {step.event} {step.dest}"
            taken[key] = taken.get(key, 0) + step.count
        for key, count in taken.items():
            assert _count(tab, f'[data-edge="{key}"]') == count, key
        assert _count(tab, '[data-state="exchanged"]', "data-entered") == mix.granted
        assert _count(tab, '[data-state="denied"]', "data-entered") == mix.denied
        assert _count(tab, '[data-state="failed"]', "data-entered") == mix.failed
        summary = tab.page.locator('[data-summary="podio"]').inner_text()
        assert summary == (
            f"{mix.started} started and {mix.granted} granted, {mix.denied} denied, {mix.failed} failed"
            f" in the last 24h; {mix.pending} pending now."
        )

        # Errors by code (the chart's legend), and tokens by health with the dead grant.
        for code, count in mix.failure_codes:
            assert _count(tab, f'li[data-code="{code}"]') == count
        assert tab.page.locator("svg.chart rect").count() >= 1
        healths = {c.health.value: c.count for c in tokens.counts}
        for health in ("fresh", "expiring", "refreshable", "expired", "dead"):
            assert _count(tab, f'div[data-health="{health}"]') == healths.get(health, 0)
        assert _count(tab, 'div[data-health="unsaved"]') == 0
        dead = tab.page.locator(f'tr[data-key="{mix.dead_key}"]')
        assert dead.get_attribute("data-health") == "dead"
        assert "ago" in dead.locator("td").nth(5).inner_text()  # found dead: when
        tab.page.set_viewport_size({"width": 1280, "height": 900})
        shot = tab.shot("operator-2-page")
        assert shot.stat().st_size > 10_000

        # A new flow shows up at the next refresh, without reloading the page.
        navigations: list[str] = []
        tab.page.on("framenavigated", lambda frame: navigations.append(frame.url))

        async def another() -> None:
            async with fe.AsyncEngine(
                "podio", client=emulator.client, endpoints=emulator.endpoints, store=url
            ) as engine:
                await engine.start()

        run_async(another())
        # (A locator wait: the page's CSP forbids the eval that wait_for_function needs.)
        tab.page.locator('[data-state="redirected"][data-pending="2"]').wait_for()
        assert navigations == []
        assert int(tab.page.locator("#live").get_attribute("data-refreshes") or "0") >= 1

        # The dead grant's link starts a new login for that account: the provider's consent page.
        dead.get_by_role("link", name="Start a new login").click()
        tab.page.wait_for_url(re.compile(r".*/oauth/authorize\?.*"))
        assert tab.heading() == "Authorize sandbox-client"
        tab.assert_nothing_third_party(server.url, emulator.url)
    finally:
        tab.close()


def test_without_javascript_the_page_still_shows_everything(
    chromium: Any, screenshots: Path, site: tuple[Any, ...]
) -> None:
    server, _url, mix, _emulator = site
    context = chromium.new_context(java_script_enabled=False, viewport={"width": 1100, "height": 800})
    try:
        page = context.new_page()
        page.goto(server.url + "/operator")
        page.get_by_label("Operator secret").fill(OPERATOR_SECRET)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/operator$"))
        assert page.locator('[data-edge=" start redirected"]').get_attribute("data-count") == str(mix.started)
        assert page.locator("noscript").count() == 1  # the meta refresh reloads the whole page instead
    finally:
        context.close()
