"""The httpx transport: timeouts, size cap, and whether a failed request may have been sent."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import flowengine as fe
import pytest

from flowengine_httpx import HttpxTransport

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


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_answer_is_read_with_lower_case_headers(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    url = await raw_server(handler)
    transport = HttpxTransport()
    response = await transport.send(fe.HttpRequest("POST", url, {"content-type": "application/json"}, b"{}"))
    await transport.aclose()
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.body == b"{}"


async def test_refused_connection_was_not_sent() -> None:
    transport = HttpxTransport()
    with pytest.raises(fe.TransportError) as caught:
        await transport.send(fe.HttpRequest("POST", f"http://127.0.0.1:{_free_port()}/token"))
    await transport.aclose()
    assert caught.value.sent is False
    assert caught.value.code == "transport_error"


async def test_read_timeout_may_have_been_sent(raw_server: Callable[[Handler], Awaitable[str]]) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await release.wait()
        writer.close()

    url = await raw_server(handler)
    transport = HttpxTransport(fe.TransportConfig(timeout=0.2))
    with pytest.raises(fe.TransportError) as caught:
        await transport.send(fe.HttpRequest("POST", url))
    release.set()
    await transport.aclose()
    assert caught.value.code == "transport_timeout"
    assert caught.value.sent is True


async def test_endless_body_is_cut_at_the_limit(raw_server: Callable[[Handler], Awaitable[str]]) -> None:
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
    transport = HttpxTransport(fe.TransportConfig(max_response_bytes=64 * 1024))
    with pytest.raises(fe.TransportError) as caught:
        await transport.send(fe.HttpRequest("POST", url))
    await transport.aclose()
    assert caught.value.code == "response_too_large"


async def test_connection_reset_mid_body(raw_server: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"acc')
        await writer.drain()
        writer.transport.abort()

    url = await raw_server(handler)
    transport = HttpxTransport()
    with pytest.raises(fe.TransportError) as caught:
        await transport.send(fe.HttpRequest("POST", url))
    await transport.aclose()
    assert caught.value.sent is True
