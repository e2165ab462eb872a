"""What the aiohttp transport learns from the wire: whether a request got a connection.

A request that times out before it has a connection cannot have reached the
server; one that has a connection may have (its headers go out next). aiohttp
says nothing about that when a deadline cancels it, so the transport's own
connector marks the running request (found through a context variable: the
connector runs in the sending task) as soon as a connection is handed to it.
Imported on the first ``send``, with aiohttp itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

__all__ = ["ATTEMPT", "Attempt", "MarkingConnector"]


class Attempt:
    """One request on its way: ``connected`` once a connection was handed to it."""

    __slots__ = ("connected",)

    def __init__(self) -> None:
        self.connected = False


ATTEMPT: ContextVar[Attempt | None] = ContextVar("flowengine_aiohttp_attempt", default=None)


class MarkingConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that marks the running request once it has a connection."""

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> Connection:
        """The connection aiohttp would hand out, after marking the request that asked for it."""
        connection = await super().connect(req, traces, timeout)
        attempt = ATTEMPT.get()
        if attempt is not None:
            attempt.connected = True
        return connection
