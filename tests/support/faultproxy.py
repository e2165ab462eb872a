"""A TCP proxy of our own between a store and its real server, failing when the test says so.

``FaultProxy`` listens on a loopback port and relays every byte to the real
Redis or PostgreSQL. The test controls it step by step, never by timing:

- ``cut(reset=True)``: every open connection is closed at once, both sides
  (an RST when ``reset``, else a FIN), as a server restart or a dropped
  route would; new connections still pass;
- ``cut_on_next(direction)``: arm a cut that strikes mid-operation, the moment
  the next bytes go ``"up"`` (a request: lost before the server saw it) or
  come ``"down"`` (an answer: the server acted, the client never hears);
  ``struck`` is an event set when it did;
- ``refuse()``: stop listening, so new connections are refused (and cut the
  open ones): the server is down;
- ``blackhole()``: accept connections and swallow every byte both ways, old
  connections and new: the server (or the route to it) hangs;
- ``restore()``: back to relaying; connections that lived through a blackhole
  are cut (their bytes were lost mid-stream, as after a long partition).

Everything runs on the test's event loop; each control call returns once
the proxy is in its new mode. Counters (``accepted``, ``open``) let a test see
what the client did.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Literal

__all__ = ["FaultProxy"]

Direction = Literal["up", "down"]
Mode = Literal["pass", "refuse", "blackhole"]
_CHUNK = 65536


class _Link:
    """One client connection and its upstream twin, relayed both ways."""

    def __init__(self, proxy: FaultProxy, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.server_writer: asyncio.StreamWriter | None = None
        self.frozen = proxy.mode == "blackhole"

    async def run(self) -> None:
        try:
            if self.frozen:
                await self._swallow()
                return
            host, port = self.proxy.upstream
            server_reader, self.server_writer = await asyncio.open_connection(host, port)
            await asyncio.gather(
                self._pump(self.client_reader, self.server_writer, "up"),
                self._pump(server_reader, self.client_writer, "down"),
            )
        except (ConnectionError, OSError):
            pass
        finally:
            self.close(reset=False)

    async def _swallow(self) -> None:
        while await self.client_reader.read(_CHUNK):
            pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: Direction) -> None:
        while data := await reader.read(_CHUNK):
            if self.frozen:
                continue  # blackholed: read and dropped, never delivered
            if self.proxy.strike(way):
                self.proxy.cut_now(reset=True)
                return
            writer.write(data)
            await writer.drain()
        self.close(reset=False)

    def freeze(self) -> None:
        self.frozen = True

    def close(self, *, reset: bool) -> None:
        for writer in (self.client_writer, self.server_writer):
            if writer is None or writer.transport.is_closing():
                continue
            if reset:
                sock = writer.get_extra_info("socket")
                if sock is not None:  # linger 0: close() sends RST, not FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
        self.proxy.links.discard(self)


class FaultProxy:
    """A loopback TCP proxy to ``upstream`` that cuts, refuses or blackholes on command."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self.port = 0
        self.mode: Mode = "pass"
        self.links: set[_Link] = set()
        self.accepted = 0
        self.struck = asyncio.Event()
        self._armed: Direction | None = None
        self._server: asyncio.Server | None = None

    @property
    def open(self) -> int:
        """Connections open through the proxy now."""
        return len(self.links)

    async def start(self) -> FaultProxy:
        """Listen (on a free port the first time, on the same port after ``refuse``)."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening and close every connection."""
        await self._stop_listening()
        self.cut_now(reset=False)
        await self._settle()

    # -- the test's controls ----------------------------------------------------------------

    async def cut(self, *, reset: bool = True) -> int:
        """Close every open connection now (RST, or FIN when ``reset`` is False); how many."""
        count = self.cut_now(reset=reset)
        await self._settle()
        return count

    def cut_on_next(self, direction: Direction) -> asyncio.Event:
        """Cut every connection when the next bytes go ``up`` or come ``down``; the event of it."""
        self.struck.clear()
        self._armed = direction
        return self.struck

    async def refuse(self) -> None:
        """Stop listening (new connections are refused) and cut the open ones."""
        self.mode = "refuse"
        await self._stop_listening()
        await self.cut()

    async def blackhole(self) -> None:
        """Accept connections but deliver nothing, either way, on old connections and new."""
        self.mode = "blackhole"
        for link in self.links:
            link.freeze()

    async def restore(self) -> None:
        """Relay again: listen if refused; cut connections a blackhole swallowed bytes of."""
        was, self.mode = self.mode, "pass"
        if was == "refuse":
            await self.start()
        elif was == "blackhole":
            for link in [link for link in self.links if link.frozen]:
                link.close(reset=True)
            await self._settle()

    # -- plumbing ------------------------------------------------------------------------------

    def strike(self, way: Direction) -> bool:
        """True (once) when an armed cut is for bytes going ``way``."""
        if self._armed != way:
            return False
        self._armed = None
        self.struck.set()
        return True

    def cut_now(self, *, reset: bool) -> int:
        links = list(self.links)
        for link in links:
            link.close(reset=reset)
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(self, (reader, writer))
        self.links.add(link)
        await link.run()

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Not wait_closed(): it waits for every connection's handler, blackholed ones too.

    async def _settle(self) -> None:
        """Give the closed connections' handlers a few turns of the loop to see their end."""
        for _ in range(3):
            await asyncio.sleep(0)  # a turn of the loop, not a wait for time to pass
