"""The operator page over HTTP (in process): off by default, never open, and its numbers the store's.

The browser test (tests/web/test_operator_browser.py) drives the same page in Chromium.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import flowengine as fe
import httpx
import pytest
from flowengine.testing import FakeClock

from flowengine_memory import MemoryStore
from flowengine_web import CONTENT_SECURITY_POLICY, OPERATOR_CONTENT_SECURITY_POLICY, create_app
from tests.conftest import SandboxFixture
from tests.support.mix import Mix, clock_an_hour_back, make_mix
from tests.web.conftest import ORIGIN, SECRET

OPERATOR_SECRET = "operator-secret-0123456789-abcdef"


class SandboxProvider:
    """The session's sandbox as ``make_mix`` needs it."""

    def __init__(self, sandbox: SandboxFixture) -> None:
        self.sandbox = sandbox

    async def consent(self, url: str | None, *, approve: bool = True) -> str:
        return await self.sandbox.consent(url, approve=approve)

    def forget_grants(self) -> None:
        self.sandbox.server.state.reset()


@pytest.fixture
def clock() -> FakeClock:
    return clock_an_hour_back()


@pytest.fixture
async def mixed(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, clock: FakeClock
) -> AsyncIterator[tuple[fe.AsyncEngine, Mix]]:
    engine = fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=clock)
    mix = await make_mix(engine, SandboxProvider(sandbox), clock)
    yield engine, mix
    await engine.aclose()


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN)


@contextlib.asynccontextmanager
async def signed_in(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A browser that signed in with the operator secret."""
    async with client(app) as browser:
        answer = await browser.post("/operator/sign-in", data={"secret": OPERATOR_SECRET})
        assert answer.status_code == 303, answer.text
        yield browser


async def test_the_operator_page_is_off_by_default(engine: fe.AsyncEngine) -> None:
    async with client(create_app(engine, secret_key=SECRET)) as browser:
        for path in ("/operator", "/operator/live", "/operator/operator.js"):
            assert (await browser.get(path)).status_code == 404
        assert (await browser.post("/operator/sign-in", data={"secret": "x" * 20})).status_code == 404


async def test_without_the_secret_the_page_is_refused(engine: fe.AsyncEngine) -> None:
    app = create_app(engine, secret_key=SECRET, operator_secret=OPERATOR_SECRET)
    async with client(app) as browser:
        page = await browser.get("/operator")
        assert page.status_code == 403
        assert "Operator sign-in" in page.text and 'type="password"' in page.text
        assert "data-spec" not in page.text  # nothing about the store before signing in
        assert (await browser.get("/operator/live")).status_code == 403
        assert (await browser.get("/operator", headers={"accept": "application/json"})).status_code == 403
        wrong = await browser.post("/operator/sign-in", data={"secret": OPERATOR_SECRET + "x"})
        assert wrong.status_code == 403 and "not the operator secret" in wrong.text
        assert "set-cookie" not in wrong.headers
        # A forged cookie, or one signed with another secret, admits nothing.
        browser.cookies.set("flowengine_operator", f"{int(time.time()) + 999}.{'a' * 22}.{'b' * 43}")
        assert (await browser.get("/operator")).status_code == 403


async def test_the_secret_signs_in_with_a_strict_cookie_and_out_again(engine: fe.AsyncEngine) -> None:
    app = create_app(engine, secret_key=SECRET, operator_secret=OPERATOR_SECRET)
    async with client(app) as browser:
        answer = await browser.post("/operator/sign-in", data={"secret": OPERATOR_SECRET})
        assert answer.status_code == 303 and answer.headers["location"] == "/operator"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/operator" in cookie
        assert OPERATOR_SECRET.lower() not in cookie
        page = await browser.get("/operator")
        assert page.status_code == 200 and 'data-spec="podio"' in page.text
        out = await browser.post("/operator/sign-out")
        assert out.status_code == 303
        assert (await browser.get("/operator")).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}],
)
async def test_a_sign_in_posted_from_another_site_is_refused(
    engine: fe.AsyncEngine, headers: dict[str, str]
) -> None:
    app = create_app(engine, secret_key=SECRET, operator_secret=OPERATOR_SECRET)
    async with client(app) as browser:
        answer = await browser.post("/operator/sign-in", data={"secret": OPERATOR_SECRET}, headers=headers)
        assert answer.status_code == 403 and "set-cookie" not in answer.headers


async def test_a_host_hook_decides_instead_of_a_secret(engine: fe.AsyncEngine) -> None:
    def admin_only(request: Any) -> bool:
        return request.headers.get("x-admin") == "yes"

    app = create_app(engine, secret_key=SECRET, operator=admin_only)
    async with client(app) as browser:
        refused = await browser.get("/operator")
        assert refused.status_code == 403 and 'type="password"' not in refused.text  # no secret to type
        assert (await browser.get("/operator", headers={"x-admin": "yes"})).status_code == 200
        assert (await browser.post("/operator/sign-in", data={"secret": "x" * 20})).status_code == 403


@pytest.mark.parametrize("secret", ["short", b"", "x" * 15])
async def test_an_operator_secret_too_short_is_refused(engine: fe.AsyncEngine, secret: str | bytes) -> None:
    with pytest.raises(fe.ConfigError, match="at least 16 bytes"):
        create_app(engine, secret_key=SECRET, operator_secret=secret)


async def test_the_operator_csp_only_adds_what_the_page_needs_from_self(engine: fe.AsyncEngine) -> None:
    app = create_app(engine, secret_key=SECRET, operator_secret=OPERATOR_SECRET)
    base = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    operator = dict(part.strip().split(" ", 1) for part in OPERATOR_CONTENT_SECURITY_POLICY.split(";"))
    for directive, value in operator.items():
        added = set(value.split()) - set(base.get(directive, "").split())
        assert added <= {"'self'"}, (directive, added)
    assert operator["default-src"] == "'none'" and operator["frame-ancestors"] == "'none'"
    async with signed_in(app) as browser:
        assert (await browser.get("/operator")).headers[
            "content-security-policy"
        ] == OPERATOR_CONTENT_SECURITY_POLICY
        script = await browser.get("/operator/operator.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert "fetch(" in script.text and "http" not in script.text.split("*/", 1)[1]  # nothing off-site
        assert (await browser.get("/")).headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def _numbers(page: str, attribute: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(rf'data-{attribute}="([^"]+)" data-count="(\d+)"', page)}


async def test_sec13_the_page_shows_the_stores_numbers_and_no_secret(
    mixed: tuple[fe.AsyncEngine, Mix], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine, mix = mixed
    app = create_app(engine, secret_key=SECRET, operator_secret=OPERATOR_SECRET)
    async with signed_in(app) as browser:
        page = (await browser.get("/operator")).text
        data = (await browser.get("/operator", headers={"accept": "application/json"})).json()
    now = time.time()
    counts = await engine.store.flow_counts(since=now - 86400)
    tokens = await engine.store.token_counts(now=now, within=7200)

    # The machine: flows waiting per state now, and each edge taken, as the store counts them.
    stored = {c.state: c.count for c in counts.states}
    for state in ("redirected", "authorized", "exchanging"):
        assert f'data-state="{state}" data-pending="{stored.get(state, 0)}"' in page
    assert 'data-state="redirected" data-pending="1"' in page  # the one left waiting
    taken: dict[str, int] = {}
    for step in counts.steps:
        key = f"{step.source} {step.event} {step.dest}"
        taken[key] = taken.get(key, 0) + step.count
    shown = _numbers(page, "edge")
    assert {k: v for k, v in shown.items() if v} == taken
    assert shown[" start redirected"] == mix.started
    assert f'data-state="exchanged" data-entered="{mix.granted}"' in page
    assert f'data-state="denied" data-entered="{mix.denied}"' in page
    assert f'data-state="failed" data-entered="{mix.failed}"' in page
    assert _numbers(page, "code") == dict(mix.failure_codes)

    # Tokens by health, and the dead grant with a link that starts a new flow.
    healths = {c.health.value: c.count for c in tokens.counts}
    assert healths == {"dead": 1}
    assert 'data-health="dead" data-count="1"' in page and 'data-health="unsaved" data-count="0"' in page
    row = re.search(rf'<tr data-key="{mix.dead_key}" data-health="dead">.*?</tr>', page)
    assert row is not None and '<a href="/auth/podio"' in row[0]

    spec = data["specs"][0]
    assert spec["outcomes"] == {"granted": mix.granted, "denied": mix.denied, "failed": mix.failed}
    assert spec["started"] == mix.started and spec["tokens"]["counts"]["dead"] == 1

    # Fingerprints only: no token, refresh token or operator secret anywhere.
    token = await engine.get_token(mix.dead_key)
    assert token is not None and token.fingerprint in page
    everything = page + str(data) + caplog.text
    for secret in (token.access_token, token.refresh_token or "", OPERATOR_SECRET):
        assert secret not in everything


async def test_the_live_part_and_the_windows(mixed: tuple[fe.AsyncEngine, Mix]) -> None:
    engine, _mix = mixed
    app = create_app(engine, secret_key=SECRET, operator_secret=OPERATOR_SECRET, operator_refresh=3)
    async with signed_in(app) as browser:
        live = await browser.get("/operator/live?window=6h")
        assert live.status_code == 200 and live.text.startswith('<div id="live" data-refresh="3"')
        assert 'data-src="/operator/live?window=6h"' in live.text
        page = await browser.get("/operator?window=1h")
        assert '<script src="/operator/operator.js" defer></script>' in page.text
        assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page.text
        assert (await browser.get("/operator?window=1y")).status_code == 400


class TokensAway(MemoryStore):
    """A store that keeps flows but cannot take a token: the provider's answer stays in the process."""

    async def put_token(self, token: fe.Token) -> None:
        raise fe.StoreError("the token table is away", code="store_unavailable", retryable=True)


async def test_unsaved_tokens_of_this_process_are_shown(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    engine = fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=TokensAway(), save_deadline=0.01
    )
    flow = await engine.start()
    with pytest.raises(fe.StoreError) as caught:
        await engine.callback(await sandbox.consent(flow.authorization_url))
    assert caught.value.code == "token_unsaved"
    [held] = engine.unsaved_tokens
    app = create_app(engine, secret_key=SECRET, operator_secret=OPERATOR_SECRET)
    async with signed_in(app) as browser:
        page = (await browser.get("/operator")).text
    assert 'data-health="unsaved" data-count="1"' in page
    assert f'<tr data-key="{held.key}" data-health="unsaved">' in page
    assert held.access_token not in page and held.fingerprint in page
    await engine.aclose()
