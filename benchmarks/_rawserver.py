"""A minimal HTTP/1.1 server on asyncio that answers every request with a Podio token response.

It reads a request head and its ``Content-Length`` body, answers ``TOKEN_BODY``
and keeps the connection open: the least a token endpoint can cost, so that
``benchmarks.e2e`` can tell the client's cost from the sandbox's.
Run by ``benchmarks._common.server_process``; it prints ``raw server on URL``.
"""

from __future__ import annotations

import asyncio

from benchmarks._common import TOKEN_BODY

__all__ = ["main"]

RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: no-store\r\n"
    b"content-length: " + str(len(TOKEN_BODY)).encode() + b"\r\n\r\n" + TOKEN_BODY
)
MAX_HEAD = 64 * 1024


class _TokenEndpoint(asyncio.Protocol):
    """One connection: answer each complete request (head and body) in order."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(RESPONSE)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_TokenEndpoint, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"raw server on http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Serve until the process is ended (``server_process`` ends it)."""
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
