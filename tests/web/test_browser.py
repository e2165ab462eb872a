"""A real browser: Playwright driving Debian's Chromium through the frontend and the sandbox.

Home → "Try to authorize" → the sandbox's consent page → Grant → the success
page; then Deny; then the back button after success. A screenshot of each page
is saved under a pytest temp dir (or ``$FLOWENGINE_WEB_SCREENSHOTS``) and its
path printed. Chromium is the system one (``apt-get install -y chromium``);
``playwright install`` is never needed. Without it the tests skip, and under
``CI=true`` they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flowengine as fe
import pytest
from flowengine import open_sandbox

from flowengine_sandbox.server import SandboxServer
from flowengine_web import WebServer, create_app
from tests.conftest import SandboxFixture
from tests.web.conftest import SECRET

# Slow lane: Chromium.
pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; it is in the dev extra)"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


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
def web(_sandbox_server: SandboxServer, podio_spec: fe.FlowSpec) -> Iterator[WebServer]:
    """The frontend over loopback, its engine on the session's sandbox (consent: ask)."""
    with open_sandbox(podio_spec, _sandbox_server.url) as emulator:
        engine = fe.AsyncEngine(podio_spec, client=emulator.client, endpoints=emulator.endpoints)
        with WebServer(create_app(engine, secret_key=SECRET, close_engines=True)) as server:
            yield server


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("FLOWENGINE_WEB_SCREENSHOTS")
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        return Path(configured)
    return tmp_path_factory.mktemp("web-screenshots")


class Tab:
    """A page of a fresh browser context, recording every URL it loads and every console error."""

    def __init__(self, chromium: Any, shots: Path) -> None:
        self.context = chromium.new_context(viewport={"width": 900, "height": 640})
        self.page = self.context.new_page()
        self.page.set_default_timeout(5000)
        self.shots = shots
        self.requested: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda request: self.requested.append(request.url))
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    def heading(self) -> str:
        text: str = self.page.get_by_role("heading", level=1).inner_text()
        return text

    def authorize(self, web: WebServer, decision: str, shot: str | None = None) -> None:
        """Home, "Try to authorize", then Grant or Deny on the consent page."""
        self.page.goto(web.url + "/")
        assert self.heading() == "flowengine"
        if shot:
            self.shot(f"1-{shot}-home")
        self.page.get_by_role("link", name="Try to authorize with podio").click()
        self.page.wait_for_url(re.compile(r".*/oauth/authorize\?.*"))
        assert self.heading() == "Authorize sandbox-client"
        if shot:
            self.shot(f"2-{shot}-consent")
        self.page.get_by_role("button", name=decision).click()
        self.page.wait_for_url(re.compile(r".*/auth/podio/result/[A-Za-z0-9_-]+$"))

    def close(self) -> None:
        self.context.close()

    def assert_nothing_third_party(self, *origins: str) -> None:
        hosts = {urlsplit(url).netloc for url in self.requested}
        assert hosts <= {urlsplit(origin).netloc for origin in origins}, hosts
        assert not any("Content Security Policy" in error for error in self.console_errors), (
            self.console_errors
        )


@pytest.fixture
def tab(chromium: Any, screenshots: Path) -> Iterator[Tab]:
    tab = Tab(chromium, screenshots)
    yield tab
    tab.close()


def test_grant_shows_who_authorized_and_a_fingerprint(
    tab: Tab, web: WebServer, sandbox: SandboxFixture
) -> None:
    tab.authorize(web, "Grant", shot="grant")
    assert tab.heading() == "Authorized"
    text = tab.page.locator("main").inner_text()
    assert "podio authorized this site as user:1001." in text
    assert re.search(r"Token\s+sha256:[0-9a-f]{12} \(a fingerprint, not the token\)", text)
    assert "code=" not in tab.page.url and "state=" not in tab.page.url
    # The hashed inline style sheet is applied (the CSP let it through).
    width = tab.page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth")
    assert width == "640px"
    tab.shot("3-grant-success")
    assert len(sandbox.token_requests()) == 1
    tab.assert_nothing_third_party(web.url, sandbox.server.url)


def test_deny_shows_the_providers_reason_and_retry(tab: Tab, web: WebServer, sandbox: SandboxFixture) -> None:
    tab.authorize(web, "Deny")
    assert tab.heading() == "Authorization denied"
    assert tab.page.get_by_role("alert").inner_text() == "The user denied your request."
    tab.shot("4-deny-denied")
    tab.page.get_by_role("link", name="Retry authorizing with podio").click()
    tab.page.wait_for_url(re.compile(r".*/oauth/authorize\?.*"))  # a new flow, at the consent page
    assert sandbox.token_requests() == []
    tab.assert_nothing_third_party(web.url, sandbox.server.url)


def test_back_after_success_never_meets_the_callback(
    tab: Tab, web: WebServer, sandbox: SandboxFixture
) -> None:
    tab.authorize(web, "Grant")
    result_url = tab.page.url
    fingerprint = tab.page.locator("dd code").nth(1).inner_text()
    visited: list[str] = []
    tab.page.on("framenavigated", lambda frame: visited.append(frame.url))
    tab.page.go_back()
    # One step back is the consent page: the callback left no entry in the history.
    assert tab.page.url.startswith(sandbox.server.url + "/oauth/authorize?")
    assert tab.heading() == "Authorize sandbox-client"
    tab.shot("5-back-consent")
    tab.page.go_forward()
    assert tab.page.url == result_url
    assert tab.heading() == "Authorized"
    assert tab.page.locator("dd code").nth(1).inner_text() == fingerprint
    tab.page.reload()
    assert tab.heading() == "Authorized"
    tab.page.go_back()
    tab.page.go_back()
    assert tab.page.url == web.url + "/"
    assert not any("/callback" in url for url in visited)
    assert len(sandbox.token_requests()) == 1


def test_a_callback_opened_in_another_browser_is_refused(
    tab: Tab, chromium: Any, screenshots: Path, web: WebServer, sandbox: SandboxFixture
) -> None:
    tab.page.goto(web.url + "/auth/podio")
    assert tab.heading() == "Authorize sandbox-client"
    # Someone else answers this consent page and keeps the callback URL (a link sent round).
    with ThreadPoolExecutor(1) as pool:
        callback = pool.submit(asyncio.run, sandbox.consent(tab.page.url)).result()
    other = Tab(chromium, screenshots)
    try:
        other.page.goto(callback)
        assert other.page.url == web.url + "/auth/podio/error/session_mismatch"
        assert other.heading() == "Authorization failed"
        assert "started in another browser" in other.page.get_by_role("alert").inner_text()
        other.shot("6-other-browser-error")
    finally:
        other.close()
    assert sandbox.token_requests() == []
    tab.page.goto(callback)  # the browser that started it still can finish it
    assert tab.heading() == "Authorized"
    assert len(sandbox.token_requests()) == 1
