"""Fixtures of the web frontend tests: the app over an in-process ASGI transport, and browsers.

A ``Browser`` is an httpx client with its own cookie jar, talking to the app
without sockets; the sandbox (the session's, over loopback) plays the provider.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import flowengine as fe
import httpx
import pytest
from starlette.types import ASGIApp

from flowengine_web import create_app
from tests.conftest import SandboxFixture

SECRET = "test-secret-key-0123456789abcdef"
ORIGIN = "http://127.0.0.1:8000"
SECURITY_HEADERS = ("content-security-policy", "referrer-policy", "cache-control", "x-content-type-options")


@attrs.define
class Browser:
    """One browser: a cookie jar and the requests a person's clicks make."""

    http: httpx.AsyncClient
    sandbox: SandboxFixture

    async def start(self, spec: str = "podio", **headers: str) -> httpx.Response:
        return await self.http.get(f"/auth/{spec}", headers=headers)

    async def authorize(self, spec: str = "podio", *, approve: bool = True) -> str:
        """Start a flow and answer the consent page; the callback URL the provider sends back."""
        started = await self.start(spec)
        assert started.status_code == 302, started.text
        return await self.sandbox.consent(started.headers["location"], approve=approve)

    async def get(self, url: str, **headers: str) -> httpx.Response:
        return await self.http.get(url, headers=headers)

    async def follow(self, url: str, **headers: str) -> tuple[httpx.Response, httpx.Response]:
        """GET ``url`` (a callback), which must answer 303; and the page it points to."""
        first = await self.http.get(url, headers=headers)
        assert first.status_code == 303, (first.status_code, first.text)
        return first, await self.http.get(first.headers["location"], headers=headers)


def state_of(url: str) -> str:
    """The ``state`` parameter of an authorization or callback URL."""
    return parse_qs(urlsplit(url).query)["state"][0]


def assert_secure_headers(response: httpx.Response) -> None:
    for name in SECURITY_HEADERS:
        assert name in response.headers, f"{response.request.url.path}: no {name}"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


@pytest.fixture
async def make_browser(sandbox: SandboxFixture) -> AsyncIterator[Any]:
    """``make_browser(app, base_url=ORIGIN)``: a new browser (its own cookie jar) for an app.

    ``raise_app_exceptions=False`` shows what a browser sees of a 500, instead of raising.
    """
    clients: list[httpx.AsyncClient] = []

    def make(app: ASGIApp, base_url: str = ORIGIN, *, raise_app_exceptions: bool = True) -> Browser:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        client = httpx.AsyncClient(transport=transport, base_url=base_url)
        clients.append(client)
        return Browser(client, sandbox)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def app(engine: fe.AsyncEngine) -> ASGIApp:
    return create_app(engine, secret_key=SECRET)


@pytest.fixture
async def browser(app: ASGIApp, sandbox: SandboxFixture) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        yield Browser(client, sandbox)


@pytest.fixture
async def other_browser(app: ASGIApp, sandbox: SandboxFixture) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        yield Browser(client, sandbox)


# --- `flowengine web serve` in a subprocess ------------------------------------------

_ANNOUNCE = re.compile(r"flowengine web on (http://\S+?)/ ")


class ServeProcess:
    """``flowengine web serve ...`` in a subprocess; ``url`` once it announced itself."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        command = [sys.executable, "-c", "from flowengine.cli import main; main()", "web", "serve", *args]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self._url: str | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def wait_url(self, timeout: float = 20.0) -> str:
        """The app's base URL, from its first line; fails with its stderr if it died first."""
        deadline = time.monotonic() + timeout
        while self._url is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"web serve did not start: {self.stderr}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            found = _ANNOUNCE.search(line)
            if found:
                self._url = found.group(1)
        return self._url

    @property
    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> int:
        """Ctrl-C, as a person would; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
