"""SECURITY.md 37: flowengine.auth sends a token only to its origin and acts only on that origin's 401.

Each test runs once per client flowengine.auth serves (httpx async and sync, aiohttp,
requests, httpx async on the sync Engine), against the sandbox (the API, on
127.0.0.1) and a foreign server: another address (127.0.0.2) or another port of the
same one. The foreign server records the ``Authorization`` of every request it gets
and answers 401, or redirects back to the API.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import AsyncIterator, Iterator

import attrs
import pytest

from flowengine_sandbox.faults import Fault
from tests.auth.conftest import KINDS, AuthClient, Clocks, logged_in, refreshes
from tests.conftest import SandboxFixture


@attrs.define
class Foreign:
    """A server on another origin: what it saw, and where it sends its visitors (None: 401)."""

    url: str = ""
    seen: list[str | None] = attrs.Factory(list)
    location: str | None = None


def _serve(host: str) -> Iterator[Foreign]:
    foreign = Foreign()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            foreign.seen.append(self.headers.get("Authorization"))
            if foreign.location is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            else:
                self.send_response(302)
                self.send_header("Location", foreign.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """No access log."""

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    foreign.url = f"http://{host}:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield foreign
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module", params=["127.0.0.2", "127.0.0.1"], ids=["other-host", "other-port"])
def _foreign_server(request: pytest.FixtureRequest) -> Iterator[Foreign]:
    """One server per origin for the module: stopping one waits out its poll (half a second)."""
    yield from _serve(request.param)


@pytest.fixture
def foreign(_foreign_server: Foreign) -> Foreign:
    """Another origin than the sandbox's: another loopback address, or another port; nothing seen yet."""
    _foreign_server.seen.clear()
    _foreign_server.location = None
    return _foreign_server


@pytest.fixture(params=KINDS)
async def api(request: pytest.FixtureRequest, sandbox: SandboxFixture) -> AsyncIterator[AuthClient]:
    """A logged-in client of one kind whose requests go to the sandbox's /user/status."""
    clocks = Clocks()
    sandbox.settings.clock = clocks.provider
    async with logged_in(request.param, sandbox, clocks) as client:
        yield client


def _redirect_to(sandbox: SandboxFixture, url: str) -> None:
    sandbox.settings.faults.add(
        Fault("respond", paths=("/user/status",), status=302, headers={"Location": url}, times=1)
    )


async def test_sec37_a_redirect_to_another_origin_that_answers_401_never_gets_a_token(
    api: AuthClient, sandbox: SandboxFixture, foreign: Foreign
) -> None:
    assert (await api.call()).status == 200
    token = api.sent[0]
    _redirect_to(sandbox, f"{foreign.url}/collect")

    reply = await api.call()

    assert reply.status == 401  # the foreign answer, handed back as it is
    assert foreign.seen == [None]  # no token, neither on the redirect nor on a retry
    assert refreshes(sandbox) == 0
    assert api.sent == [token, token, None]
    assert (await api.call()).status == 200  # the token was kept: no refresh, same header
    assert api.sent[3] == token and refreshes(sandbox) == 0


async def test_sec37_a_401_from_our_origin_to_a_request_without_our_token_is_not_acted_upon(
    api: AuthClient, sandbox: SandboxFixture, foreign: Foreign
) -> None:
    """Redirected away and back: the header stripped on the way out is put back only by a new hop.

    aiohttp runs its middlewares on every hop, so the hop back to our origin is a new request
    of ours and is authenticated; httpx and requests run the auth around their redirects, so
    the request that comes back has no token, and its 401 is not ours to act upon.
    """
    assert (await api.call()).status == 200
    token = api.sent[0]
    foreign.location = f"{sandbox.server.url}/user/status"
    _redirect_to(sandbox, f"{foreign.url}/bounce")

    reply = await api.call()

    assert foreign.seen == [None]
    assert refreshes(sandbox) == 0
    if api.kind == "aiohttp":
        assert (reply.status, api.sent[1:]) == (200, [token, None, token])
    else:
        assert (reply.status, api.sent[1:]) == (401, [token, None, None])


async def test_sec37_a_request_to_another_origin_is_sent_without_the_token(
    api: AuthClient, sandbox: SandboxFixture, foreign: Foreign
) -> None:
    assert (await api.call()).status == 200  # the first request pins the sandbox's origin

    reply = await api.call(url=f"{foreign.url}/user/status")

    assert reply.status == 401
    assert foreign.seen == [None]
    assert api.sent[1:] == [None]
    assert refreshes(sandbox) == 0
