"""A browser login at Authlib's OpenID provider, validated end to end.

Chromium (Playwright, the system browser as in test_browser.py) opens the web frontend,
which starts an OpenID Connect flow of specs/examples/authlib-oidc.yaml (issuer given as
its connection value); the provider's own consent page; Allow; back through the callback
to the result page. The token's account is the ID token's ``sub`` within its ``iss``,
validated against the key set the provider publishes; a spoiled ID token shows the
failure page with its code and leaves no token. Screenshots as in test_browser.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import flowengine as fe
import pytest

from flowengine_web import WebServer, create_app
from tests.oidc.conftest import (
    _oidc_provider,  # noqa: F401 - the session's provider fixture
    provider,  # noqa: F401
)
from tests.oidc.engine import SPEC
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, USER, OidcProvider, Sabotage
from tests.web.conftest import SECRET
from tests.web.test_browser import Tab, chromium, screenshots  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


@pytest.fixture
def web(provider: OidcProvider) -> Iterator[tuple[WebServer, fe.AsyncEngine]]:  # noqa: F811
    """The frontend over loopback, its engine on the example spec (issuer: the provider's)."""
    engine = fe.AsyncEngine(SPEC, client=fe.Client(CLIENT_ID, CLIENT_SECRET))
    app = create_app(
        engine,
        secret_key=SECRET,
        close_engines=True,
        connection=lambda _request, _name: {"issuer": provider.issuer},
    )
    with WebServer(app) as server:
        # The provider knows this client's redirect URI: the frontend's callback.
        with provider.state.lock:
            client = provider.state.clients[CLIENT_ID]
            client.redirect_uris = (*client.redirect_uris, f"{server.url}/auth/authlib-oidc/callback")
        yield server, engine


@pytest.fixture
def tab(chromium: Any, screenshots: Any) -> Iterator[Tab]:  # noqa: F811
    tab = Tab(chromium, screenshots)
    yield tab
    tab.close()


def _allow(tab: Tab, server: WebServer, provider: OidcProvider, shot: str) -> None:  # noqa: F811
    tab.page.goto(server.url + "/")
    tab.page.get_by_role("link", name="Try to authorize with authlib-oidc").click()
    tab.page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/authorize\?.*"))
    tab.shot(f"oidc-1-{shot}-consent")
    tab.page.get_by_role("button", name="Allow").click()
    tab.page.wait_for_url(re.compile(r".*/auth/authlib-oidc/(result|error)/.*"))


def test_a_browser_login_validates_the_id_token_end_to_end(
    tab: Tab,
    web: tuple[WebServer, fe.AsyncEngine],
    provider: OidcProvider,  # noqa: F811
) -> None:
    server, _engine = web
    _allow(tab, server, provider, "valid")
    assert tab.heading() == "Authorized"
    text = tab.page.locator("main").inner_text()
    assert f"authlib-oidc authorized this site as {provider.issuer}:{USER.sub}." in text
    assert "code=" not in tab.page.url and "state=" not in tab.page.url
    tab.shot("oidc-2-valid-authorized")
    paths = [r.path for r in provider.received()]
    assert paths == ["/token", "/userinfo"]  # the key set was fetched too: it is not a token request
    assert provider.jwks_fetches >= 1
    tab.assert_nothing_third_party(server.url, provider.issuer)


def test_a_browser_login_with_a_spoiled_id_token_fails_and_keeps_no_token(
    tab: Tab,
    web: tuple[WebServer, fe.AsyncEngine],
    provider: OidcProvider,  # noqa: F811
) -> None:
    server, engine = web
    provider.sabotage_next(Sabotage.BAD_SIGNATURE)
    _allow(tab, server, provider, "spoiled")
    assert tab.heading() != "Authorized"
    assert "id_token_invalid_signature" in tab.page.locator("main").inner_text()
    tab.shot("oidc-3-spoiled-failed")
    assert [r.path for r in provider.received()] == ["/token"]
    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
        stored = pool.submit(asyncio.run, engine.store.list_tokens(provider="authlib-oidc")).result()
    assert stored == []
