"""One harness over every client flowengine.auth serves, against the real sandbox.

Each ``AuthClient`` calls the sandbox's ``GET /user/status`` through one HTTP library
with flowengine.auth plugged in, and records the ``Authorization`` header of every
request that reached the wire (retries included), so a test counts what was sent.
Time is two injectable clocks: the engine's and the provider's (the sandbox's), so a
test can make the token expire at the provider before the engine's clock says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

import aiohttp
import attrs
import flowengine as fe
import httpx
import pytest
import requests
import requests.adapters
from flowengine.auth import AiohttpAuth, HttpxAuth, RequestsAuth

from tests.conftest import SandboxFixture

#: The sandbox's access-token lifetime in these tests; the engine keeps 60 s of leeway.
ACCESS_TTL = 3600
#: The sandbox's refresh-token lifetime (its default, 28 days).
REFRESH_TTL = 28 * 86_400

Body = Literal["bytes", "stream"] | None
Headers = dict[str, str] | None


@attrs.define
class Clock:
    """A clock a test moves by hand."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Clocks:
    """The engine's clock and the provider's."""

    engine: Clock = attrs.Factory(Clock)
    provider: Clock = attrs.Factory(Clock)

    def advance(self, seconds: float) -> None:
        self.engine.now += seconds
        self.provider.now += seconds


@attrs.frozen
class Reply:
    """What a call got back: the status and, for a 200, the JSON body."""

    status: int
    json: Any = None


class AuthClient(Protocol):
    """One HTTP library with flowengine.auth, seen the same way by every test."""

    kind: str
    engine: fe.AsyncEngine | fe.Engine
    #: The Authorization header of every request that reached the wire, in order.
    sent: list[str | None]

    async def call(
        self, *, body: Body = None, headers: dict[str, str] | None = None, url: str | None = None
    ) -> Reply: ...

    async def burst(self, count: int) -> list[Reply]: ...

    async def aclose(self) -> None: ...


def _sync_burst(call: Callable[[], Reply], count: int) -> list[Reply]:
    """``count`` calls at once, one thread each."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(call) for _ in range(count)]
        return [future.result() for future in futures]


def _reply(status: int, read_json: Callable[[], Any]) -> Reply:
    return Reply(status, read_json() if status == 200 else None)


class HttpxAsyncClient:
    """``httpx.AsyncClient(auth=HttpxAuth(...))``."""

    def __init__(self, kind: str, engine: fe.AsyncEngine | fe.Engine, key: str, url: str) -> None:
        self.kind, self.engine, self.url = kind, engine, url
        self.sent: list[str | None] = []

        async def record(request: httpx.Request) -> None:
            self.sent.append(request.headers.get("authorization"))

        self.http = httpx.AsyncClient(
            auth=HttpxAuth(engine, key=key),
            event_hooks={"request": [record]},
            trust_env=False,
            follow_redirects=True,
        )

    async def call(
        self, *, body: Body = None, headers: dict[str, str] | None = None, url: str | None = None
    ) -> Reply:
        async def stream() -> AsyncIterator[bytes]:
            yield b"streamed"

        content = {None: None, "bytes": b"in memory", "stream": stream()}[body]
        response = await self.http.request("GET", url or self.url, content=content, headers=headers)
        return _reply(response.status_code, response.json)

    async def burst(self, count: int) -> list[Reply]:
        return list(await asyncio.gather(*(self.call() for _ in range(count))))

    async def aclose(self) -> None:
        await self.http.aclose()


class HttpxSyncClient:
    """``httpx.Client(auth=HttpxAuth(...))`` with the sync Engine."""

    def __init__(self, kind: str, engine: fe.Engine, key: str, url: str) -> None:
        self.kind, self.engine, self.url = kind, engine, url
        self.sent: list[str | None] = []

        def record(request: httpx.Request) -> None:
            self.sent.append(request.headers.get("authorization"))

        self.http = httpx.Client(
            auth=HttpxAuth(engine, key=key),
            event_hooks={"request": [record]},
            trust_env=False,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=100),
        )

    def _call(self, body: Body = None, headers: Headers = None, url: str | None = None) -> Reply:
        content = {None: None, "bytes": b"in memory", "stream": iter([b"streamed"])}[body]
        response = self.http.request("GET", url or self.url, content=content, headers=headers)
        return _reply(response.status_code, response.json)

    async def call(
        self, *, body: Body = None, headers: dict[str, str] | None = None, url: str | None = None
    ) -> Reply:
        return await asyncio.to_thread(self._call, body, headers, url)

    async def burst(self, count: int) -> list[Reply]:
        return await asyncio.to_thread(_sync_burst, self._call, count)

    async def aclose(self) -> None:
        self.http.close()


class AiohttpClient:
    """``aiohttp.ClientSession(middlewares=(AiohttpAuth(...),))``."""

    def __init__(self, kind: str, engine: fe.AsyncEngine, key: str, url: str) -> None:
        self.kind, self.engine, self.url = kind, engine, url
        self.sent: list[str | None] = []
        self.auth = AiohttpAuth(engine, key=key)

        async def record(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> Any:
            self.sent.append(request.headers.get("Authorization"))
            return await handler(request)

        # The recorder is inside the auth middleware: it sees every send, retries included.
        self.http = aiohttp.ClientSession(middlewares=(self.auth, record))

    async def call(
        self, *, body: Body = None, headers: dict[str, str] | None = None, url: str | None = None
    ) -> Reply:
        async def stream() -> AsyncIterator[bytes]:
            yield b"streamed"

        data = {None: None, "bytes": b"in memory", "stream": stream()}[body]
        async with self.http.get(url or self.url, data=data, headers=headers) as response:
            return Reply(response.status, await response.json() if response.status == 200 else None)

    async def burst(self, count: int) -> list[Reply]:
        return list(await asyncio.gather(*(self.call() for _ in range(count))))

    async def aclose(self) -> None:
        await self.http.close()


class _RecordingAdapter(requests.adapters.HTTPAdapter):
    """requests' transport adapter, noting each request it sends (RequestsAuth retries through it)."""

    def __init__(self, sent: list[str | None]) -> None:
        super().__init__()
        self.recorded = sent

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.recorded.append(request.headers.get("Authorization"))
        return super().send(request, *args, **kwargs)


class RequestsClient:
    """``requests`` with ``auth=RequestsAuth(...)`` and the sync Engine; a Session per call."""

    def __init__(self, kind: str, engine: fe.Engine, key: str, url: str) -> None:
        self.kind, self.engine, self.url = kind, engine, url
        self.sent: list[str | None] = []
        self.auth = RequestsAuth(engine, key=key)

    def _call(self, body: Body = None, headers: Headers = None, url: str | None = None) -> Reply:
        data = {None: None, "bytes": b"in memory", "stream": iter([b"streamed"])}[body]
        with requests.Session() as session:
            session.trust_env = False
            session.mount("http://", _RecordingAdapter(self.sent))
            response = session.get(url or self.url, data=data, headers=headers, auth=self.auth, timeout=30)
        return _reply(response.status_code, response.json)

    async def call(
        self, *, body: Body = None, headers: dict[str, str] | None = None, url: str | None = None
    ) -> Reply:
        return await asyncio.to_thread(self._call, body, headers, url)

    async def burst(self, count: int) -> list[Reply]:
        return await asyncio.to_thread(_sync_burst, self._call, count)

    async def aclose(self) -> None:
        pass


#: Every client: the library, and the engine it runs with.
KINDS = ("httpx-async", "httpx-sync", "aiohttp", "requests", "httpx-async+sync-engine")


@pytest.fixture
def clocks(sandbox: SandboxFixture) -> Clocks:
    """The engine's and the provider's clocks; the sandbox answers on the provider's."""
    clocks = Clocks()
    sandbox.settings.clock = clocks.provider
    sandbox.settings.access_ttl = ACCESS_TTL
    sandbox.settings.refresh_ttl = REFRESH_TTL
    return clocks


def open_engine(sync: bool, sandbox: SandboxFixture, clock: Clock) -> fe.AsyncEngine | fe.Engine:
    """An engine for podio.yaml on a memory store, pointed at the sandbox, on ``clock``."""
    options: dict[str, Any] = {"client": sandbox.client, "endpoints": sandbox.endpoints, "clock": clock}
    return fe.Engine("podio", **options) if sync else fe.AsyncEngine("podio", **options)


async def log_in(engine: fe.AsyncEngine | fe.Engine, sandbox: SandboxFixture) -> fe.Token:
    """Run the authorization-code flow against the sandbox; the stored token."""
    if isinstance(engine, fe.Engine):
        flow = engine.start(scope="global:all")
        flow = engine.callback(await sandbox.consent(flow.authorization_url))
        token = engine.token_for(flow)
    else:
        flow = await engine.start(scope="global:all")
        flow = await engine.callback(await sandbox.consent(flow.authorization_url))
        token = await engine.token_for(flow)
    assert token is not None, flow.error
    return token


def make_client(kind: str, engine: fe.AsyncEngine | fe.Engine, key: str, url: str) -> AuthClient:
    """The harness for ``kind`` around ``engine``."""
    if kind == "httpx-sync":
        assert isinstance(engine, fe.Engine)
        return HttpxSyncClient(kind, engine, key, url)
    if kind == "requests":
        assert isinstance(engine, fe.Engine)
        return RequestsClient(kind, engine, key, url)
    if kind == "aiohttp":
        assert isinstance(engine, fe.AsyncEngine)
        return AiohttpClient(kind, engine, key, url)
    return HttpxAsyncClient(kind, engine, key, url)


async def close_engine(engine: fe.AsyncEngine | fe.Engine) -> None:
    if isinstance(engine, fe.Engine):
        await asyncio.to_thread(engine.close)
    else:
        await engine.aclose()


@contextlib.asynccontextmanager
async def logged_in(kind: str, sandbox: SandboxFixture, clocks: Clocks) -> AsyncIterator[AuthClient]:
    """A logged-in token and a client of ``kind`` that calls /user/status with it."""
    sync = kind in ("httpx-sync", "requests", "httpx-async+sync-engine")
    engine = open_engine(sync, sandbox, clocks.engine)
    try:
        token = await log_in(engine, sandbox)
        http = make_client(kind, engine, token.key, f"{sandbox.server.url}/user/status")
        try:
            yield http
        finally:
            await http.aclose()
    finally:
        await close_engine(engine)


@pytest.fixture(params=KINDS)
async def client(
    request: pytest.FixtureRequest, sandbox: SandboxFixture, clocks: Clocks
) -> AsyncIterator[AuthClient]:
    """A logged-in token and a client of one kind that calls /user/status with it."""
    async with logged_in(request.param, sandbox, clocks) as http:
        yield http


def refreshes(sandbox: SandboxFixture) -> int:
    """How many refresh requests reached the sandbox's token endpoint."""
    return sum(1 for r in sandbox.token_requests() if r.grant_type == "refresh_token")
