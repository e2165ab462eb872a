"""Loopback mode (RFC 8252): the test plays the browser, following the URL the command prints."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from flowengine_cli import LoopbackListener, Reply
from tests.cli.conftest import AUTHORIZE_URL, Running, local_spec, run
from tests.conftest import SandboxFixture

# Slow lane: real loopback logins in subprocesses.
pytestmark = pytest.mark.slow

WAITING = re.compile(r"Waiting for the browser to come back to (http://127\.0\.0\.1:(\d+)/callback)")


def _start(running: list[Running], env: dict[str, str], *args: str) -> Running:
    login = Running("login", "podio", "--sandbox", "--loopback", "--no-browser", *args, env=env)
    running.append(login)
    return login


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_loopback_login_with_a_browser_that_follows_the_printed_url(
    sandbox: SandboxFixture, env: dict[str, str], running: list[Running]
) -> None:
    login = _start(running, env)
    url = login.wait_for(AUTHORIZE_URL)[0]
    redirect_uri, port = login.wait_for(WAITING).groups()
    assert parse_qs(urlsplit(url).query)["redirect_uri"] == [redirect_uri]

    async with httpx.AsyncClient(trust_env=False) as browser:
        # Stray requests are answered and ignored: the login goes on waiting.
        assert (await browser.get(f"{redirect_uri.removesuffix('/callback')}/favicon.ico")).status_code == 404
        assert (await browser.get(f"{redirect_uri.removesuffix('/callback')}/")).status_code == 404
        assert (await browser.post(redirect_uri)).status_code == 405
        other = await browser.get(redirect_uri, params={"code": "forged", "state": "someone-elses"})
        assert other.status_code == 400
        assert "not the callback of the login waiting here" in other.text
        silent = socket.create_connection(("127.0.0.1", int(port)))  # a pre-connect that never speaks

        callback = await sandbox.consent(url, approve=True)
        page = await browser.get(callback)
    assert page.status_code == 200
    assert "You can close this tab" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"

    code, out, err = login.finish()
    silent.close()
    assert code == 0, err
    assert "redirected -> authorized" in out
    assert "exchanging -> exchanged" in out
    assert re.search(r"Authorized as user:1001; token sha256:[0-9a-f]{12}", out)
    assert "Token stored as podio:user:1001" in out
    [request] = sandbox.token_requests()  # the forged callback sent nothing
    assert request.fields["redirect_uri"] == redirect_uri
    assert _refused(int(port)), "the listener must close as soon as the flow ends"


async def test_sec14_loopback_listener_writes_no_access_log(
    sandbox: SandboxFixture, env: dict[str, str], running: list[Running]
) -> None:
    login = _start(running, env)  # every logger at DEBUG (tests/cli/conftest.py)
    url = login.wait_for(AUTHORIZE_URL)[0]
    redirect_uri = login.wait_for(WAITING)[1]
    async with httpx.AsyncClient(trust_env=False) as browser:
        await browser.get(f"{redirect_uri.removesuffix('/callback')}/favicon.ico")
        callback = await sandbox.consent(url, approve=True)
        assert (await browser.get(callback)).status_code == 200
    code, out, err = login.finish()
    assert code == 0, err
    [request] = sandbox.token_requests()
    printed = out + err
    assert request.fields["code"] not in printed
    assert "GET /" not in printed
    assert "/callback?" not in printed
    assert "favicon" not in printed


async def test_loopback_denied_shows_the_reason_and_exits_3(
    sandbox: SandboxFixture, env: dict[str, str], running: list[Running]
) -> None:
    login = _start(running, env, "--json")
    url = login.wait_for(AUTHORIZE_URL)[0]
    async with httpx.AsyncClient(trust_env=False) as browser:
        page = await browser.get(await sandbox.consent(url, approve=False))
    assert "The user denied your request." in page.text
    code, out, _err = login.finish()
    assert code == 3
    assert json.loads(out)["state"] == "denied"  # --json: stdout is the one document
    assert sandbox.token_requests() == []


def test_loopback_timeout_exits_5_and_closes_the_listener(
    sandbox: SandboxFixture, env: dict[str, str], running: list[Running]
) -> None:
    login = _start(running, env, "--timeout", "1s")
    port = int(login.wait_for(WAITING)[2])
    code, _out, err = login.finish()
    assert code == 5
    assert "Error: login_timeout: timed out after 1s waiting for the person" in err
    assert "the flow" in err and "stays in the store in state 'redirected'" in err
    assert sandbox.token_requests() == []
    assert _refused(port)


def test_loopback_port_already_taken_exits_2(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            "login", "podio", "--sandbox", "--loopback", "--no-browser", "--port", str(port), env=env
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr


async def test_loopback_against_a_provider_with_credentials_from_the_environment(
    sandbox: SandboxFixture, env: dict[str, str], running: list[Running], tmp_path: Path
) -> None:
    """No --sandbox: the spec's own endpoints, and a client from FLOWENGINE_PODIO_CLIENT_*."""
    spec = local_spec(tmp_path, sandbox.server.url)
    secret = sandbox.settings.clients["sandbox-client"].client_secret
    login = Running(
        "login",
        str(spec),
        "--no-browser",
        env={**env, "FLOWENGINE_PODIO_CLIENT_ID": "sandbox-client", "FLOWENGINE_PODIO_CLIENT_SECRET": secret},
    )
    running.append(login)
    url = login.wait_for(AUTHORIZE_URL)[0]
    assert url.startswith(f"{sandbox.server.url}/oauth/authorize?")
    async with httpx.AsyncClient(trust_env=False) as browser:
        assert (await browser.get(await sandbox.consent(url))).status_code == 200
    code, out, err = login.finish()
    assert code == 0, err
    assert secret not in out + err
    [request] = sandbox.token_requests()
    assert request.fields["redirect_uri"].startswith("http://127.0.0.1:")


async def test_the_listener_stops_accepting_once_the_flow_ends() -> None:
    seen: list[str] = []

    async def handler(url: str) -> Reply:
        seen.append(url)
        return Reply(200, "Signed in", "You can close this tab.", finished=True)

    async with LoopbackListener(handler) as listener:
        assert listener.redirect_uri == f"http://127.0.0.1:{listener.port}/callback"
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /callback?state=s&code=c HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await reader.read()
        writer.close()
        await listener.wait()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert seen == [f"http://127.0.0.1:{listener.port}/callback?state=s&code=c"]
        assert not listener.listening
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", listener.port)


def test_ctrl_c_closes_the_listener_and_exits_130(env: dict[str, str], running: list[Running]) -> None:
    login = _start(running, env)
    port = int(login.wait_for(WAITING)[2])
    login.process.send_signal(signal.SIGINT)
    code, _out, err = login.finish()
    assert code == 130
    assert "Cancelled; no token was stored; the flow" in err
    assert _refused(port)


async def test_a_loopback_redirect_uri_names_the_path_and_gets_the_port(
    sandbox: SandboxFixture, env: dict[str, str], running: list[Running]
) -> None:
    login = _start(running, env, "--redirect-uri", "http://127.0.0.1/oauth/cb")
    url = login.wait_for(AUTHORIZE_URL)[0]
    [redirect_uri] = parse_qs(urlsplit(url).query)["redirect_uri"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/oauth/cb", redirect_uri)
    async with httpx.AsyncClient(trust_env=False) as browser:
        assert (await browser.get(redirect_uri.replace("/oauth/cb", "/callback"))).status_code == 404
        assert (await browser.get(await sandbox.consent(url))).status_code == 200
    assert login.finish()[0] == 0
