"""The transport contract, run against every transport: aiohttp (the default) and httpx.

Each guarantee the engine relies on (whether a failed request may have been sent, the
size cap, no redirects followed, no cookies kept) is one test run on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import flowengine as fe
import pytest
from flowengine import _plugins as plugins

import flowengine_aiohttp
from flowengine_aiohttp import AiohttpTransport
from flowengine_httpx import HttpxTransport
from flowengine_sandbox.faults import Fault, FaultPlan
from tests.conftest import SandboxFixture

TransportClass = type[AiohttpTransport] | type[HttpxTransport]


@pytest.fixture(params=[AiohttpTransport, HttpxTransport], ids=["aiohttp", "httpx"])
def transport_class(request: pytest.FixtureRequest) -> TransportClass:
    cls: TransportClass = request.param
    return cls


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def serve(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/token"

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_answer_is_read_with_lower_case_headers(
    raw_server: Callable[[Handler], Awaitable[str]],
    transport_class: TransportClass,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Twice: a\r\nX-Twice: b\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    url = await raw_server(handler)
    transport = transport_class()
    response = await transport.send(fe.HttpRequest("POST", url, {"content-type": "application/json"}, b"{}"))
    await transport.aclose()
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["x-twice"] == "a, b"
    assert response.body == b"{}"


async def test_request_goes_out_as_built_without_cookies_or_compression(
    raw_server: Callable[[Handler], Awaitable[str]],
    transport_class: TransportClass,
) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            head = await _read_request(reader)
            body = await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
            seen.append(head + body)
            writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=abc\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    url = await raw_server(handler)
    transport = transport_class()
    request = fe.HttpRequest("POST", url + "?a=%2F", {"user-agent": "flowengine", "x-k": "v"}, b"code=1")
    await transport.send(request)
    await transport.send(request)  # the same keep-alive connection, no cookie sent back
    await transport.aclose()
    first, second = (raw.lower() for raw in seen)
    assert first.startswith(b"post /token?a=%2f http/1.1\r\n")  # (lower-cased here) not re-quoted
    assert b"user-agent: flowengine\r\n" in first and b"x-k: v\r\n" in first
    assert b"accept-encoding: identity\r\n" in first
    assert first.endswith(b"code=1")
    assert b"cookie" not in second


async def test_refused_connection_was_not_sent(transport_class: TransportClass) -> None:
    transport = transport_class()
    with pytest.raises(fe.TransportError) as caught:
        await transport.send(fe.HttpRequest("POST", f"http://127.0.0.1:{_free_port()}/token"))
    await transport.aclose()
    assert caught.value.sent is False
    assert caught.value.code == "transport_error"


async def test_read_timeout_may_have_been_sent(
    raw_server: Callable[[Handler], Awaitable[str]], transport_class: TransportClass
) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await release.wait()
        writer.close()

    url = await raw_server(handler)
    transport = transport_class(fe.TransportConfig(timeout=0.2))
    with pytest.raises(fe.TransportError) as caught:
        await transport.send(fe.HttpRequest("POST", url))
    release.set()
    await transport.aclose()
    assert caught.value.code == "transport_timeout"
    assert caught.value.sent is True


async def test_endless_body_is_cut_at_the_limit(
    raw_server: Callable[[Handler], Awaitable[str]], transport_class: TransportClass
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(10_000):
                writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    url = await raw_server(handler)
    transport = transport_class(fe.TransportConfig(max_response_bytes=64 * 1024))
    with pytest.raises(fe.TransportError) as caught:
        await transport.send(fe.HttpRequest("POST", url))
    await transport.aclose()
    assert caught.value.code == "response_too_large"


async def test_connection_reset_mid_body(
    raw_server: Callable[[Handler], Awaitable[str]], transport_class: TransportClass
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"acc')
        await writer.drain()
        writer.transport.abort()

    url = await raw_server(handler)
    transport = transport_class()
    with pytest.raises(fe.TransportError) as caught:
        await transport.send(fe.HttpRequest("POST", url))
    await transport.aclose()
    assert caught.value.sent is True


async def test_redirect_is_answered_as_is(
    raw_server: Callable[[Handler], Awaitable[str]], transport_class: TransportClass
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/\r\n")
        writer.write(b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    url = await raw_server(handler)
    transport = transport_class()
    response = await transport.send(fe.HttpRequest("POST", url))
    await transport.aclose()
    assert response.status == 307


def test_the_hook_prefers_aiohttp_over_httpx() -> None:
    pm = plugins.new_plugin_manager()
    if not pm.is_registered(flowengine_aiohttp):  # until the entry point is installed
        pm.register(flowengine_aiohttp)
    assert isinstance(plugins.open_transport(fe.TransportConfig(), pm), AiohttpTransport)


async def test_a_whole_flow_through_the_sandbox(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, transport_class: TransportClass
) -> None:
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, transport=transport_class()
    ) as engine:
        flow = await engine.start(scope="user:read")
        flow = await engine.callback(await sandbox.consent(flow.authorization_url))
        assert flow.state == "exchanged"
        token = await engine.token_for(flow)
        assert token is not None
        assert (await engine.refresh(token)).access_token != token.access_token
    assert [r.grant_type for r in sandbox.token_requests()] == ["authorization_code", "refresh_token"]


# --- SECURITY.md 24: a total deadline per request -----------------------------------------------

# Per-read timeout far above the gap between trickled bytes, so only the total deadline can stop it.
TRICKLING = fe.TransportConfig(timeout=5.0, request_deadline=0.3)
GAP = 0.05  # seconds between trickled bytes
BOUND = 20.0  # an upper bound far above the deadline, never a window: the trickles below last ~100 s


class Trickler:
    """A raw server answer trickled a byte per GAP; ``left`` is set when the client hangs up."""

    def __init__(self, head: bytes, body: bytes, *, slow_part: str) -> None:
        self.head, self.body, self.slow_part = head, body, slow_part
        self.left = asyncio.Event()
        self.trickled = 0

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        watcher = asyncio.create_task(self._watch(reader))
        fast, slow = (b"", self.head + self.body) if self.slow_part == "headers" else (self.head, self.body)
        writer.write(fast)
        for byte in slow:
            if self.left.is_set():
                break
            writer.write(bytes([byte]))
            self.trickled += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.left.wait(), GAP)  # the server's pace, not a test window
        watcher.cancel()
        writer.close()

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(1024):
            pass
        self.left.set()


def _trickler(slow_part: str) -> Trickler:
    body = b'{"access_token": "' + b"x" * 1900 + b'"}'
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: "
        + b"p" * 1900
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    return Trickler(head, body, slow_part=slow_part)


@pytest.mark.parametrize("slow_part", ["headers", "body"])
async def test_sec24_a_trickling_server_fails_the_request_at_the_deadline(
    raw_server: Callable[[Handler], Awaitable[str]], transport_class: TransportClass, slow_part: str
) -> None:
    trickler = _trickler(slow_part)
    url = await raw_server(trickler.handler)
    transport = transport_class(TRICKLING)
    async with asyncio.timeout(BOUND):
        with pytest.raises(fe.TransportError) as caught:
            await transport.send(fe.HttpRequest("POST", url, {}, b"grant_type=refresh_token"))
        await trickler.left.wait()  # the client hung up: the deadline ended it, not the server
    await transport.aclose()
    assert caught.value.code == "transport_timeout"
    assert caught.value.sent is True  # its headers and body had gone out
    assert "0.3 s" in caught.value.message
    assert trickler.trickled < len(trickler.head + trickler.body) // 2  # cut off, not waited out


@pytest.mark.parametrize("part", ["headers", "body"])
async def test_sec24_the_sandbox_trickle_fault_is_cut_by_the_deadline(
    sandbox: SandboxFixture, transport_class: TransportClass, part: str
) -> None:
    sandbox.settings.faults = FaultPlan([Fault("trickle", part=part, interval=GAP, times=1)])
    transport = transport_class(TRICKLING)
    async with asyncio.timeout(BOUND):
        with pytest.raises(fe.TransportError) as caught:
            await transport.send(
                fe.HttpRequest("POST", sandbox.endpoints["token"], {}, b"grant_type=refresh_token")
            )
        [record] = await asyncio.to_thread(sandbox.settings.faults.trickles.wait, 1, BOUND)
    await transport.aclose()
    assert (caught.value.code, caught.value.sent) == ("transport_timeout", True)
    assert record.part == part and record.client_left
    assert record.trickled < record.total


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listen queue is full: a new connection's SYN goes unanswered, connect hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port
        for filler in fillers:
            filler.close()


async def test_sec24_a_request_still_connecting_at_the_deadline_was_not_sent(
    unanswered_port: int, transport_class: TransportClass
) -> None:
    transport = transport_class(fe.TransportConfig(connect_timeout=5.0, timeout=5.0, request_deadline=0.3))
    async with asyncio.timeout(BOUND):
        with pytest.raises(fe.TransportError) as caught:
            await transport.send(fe.HttpRequest("POST", f"http://127.0.0.1:{unanswered_port}/token"))
    await transport.aclose()
    assert (caught.value.code, caught.value.sent) == ("transport_timeout", False), caught.value.message
    assert "0.3 s" in caught.value.message  # the deadline's, not the connect timeout's


@pytest.mark.parametrize("field", ["request_deadline", "operation_deadline", "timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan")])
def test_sec24_every_duration_is_finite_and_positive(field: str, value: float) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        fe.TransportConfig(**{field: value})
    assert field in caught.value.message


def test_sec24_the_defaults_bound_every_request_and_operation() -> None:
    config = fe.TransportConfig()
    assert config.request_deadline == 60.0 and config.operation_deadline == 120.0


@pytest.mark.parametrize(("expiry", "connections"), [(3600.0, 1), (0.05, 2)], ids=["reused", "expired"])
async def test_an_idle_connection_is_reused_only_within_keepalive_expiry(
    raw_server: Callable[[Handler], Awaitable[str]],
    transport_class: TransportClass,
    expiry: float,
    connections: int,
) -> None:
    """A connection idle longer than ``keepalive_expiry`` is not reused: the server may be closing it."""
    opened: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await _read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()

    url = await raw_server(handler)
    transport = transport_class(fe.TransportConfig(keepalive_expiry=expiry, max_connections=1))  # one pool
    await transport.send(fe.HttpRequest("GET", url))
    await asyncio.sleep(0.2)  # idle: four times the short expiry, nothing next to the long one
    await transport.send(fe.HttpRequest("GET", url))
    await transport.aclose()
    assert len(opened) == connections


def test_pooled_connections_expire_before_common_servers_close_them() -> None:
    assert fe.TransportConfig().keepalive_expiry < 5, "Apache and uvicorn close an idle connection after 5 s"
