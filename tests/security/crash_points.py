"""Step boundaries of a flow, and a store and transport that freeze a flow at one of them.

SECURITY.md 21 kills a worker "between any two steps". To kill it at a known step, the
worker (``tests/security/worker.py``) drives one flow per boundary, each in its own task
with ``frozen_at`` naming the boundary where it must stop: the ``FreezingStore`` and
``FreezingTransport`` let that task's call complete, record where it stands, and never
return. Once every flow is frozen, the test sends SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, ClassVar

import flowengine as fe

from flowengine_httpx import HttpxTransport

#: In the order a flow passes them.
POINTS = (
    "started",  # the flow is stored `redirected`
    "authorized",  # the callback moved it to `authorized`
    "leased",  # its exchange lease is taken
    "marked",  # it is stored `exchanging`, nothing sent yet
    "sent",  # the token endpoint answered; nothing saved yet
    "token_saved",  # the token is stored, the flow not yet `exchanged`
    "exchanged",  # the flow is stored `exchanged`; the lease is still held
)

#: The boundary the current task's flow stops at.
frozen_at: contextvars.ContextVar[str | None] = contextvars.ContextVar("frozen_at", default=None)
_flow_id: contextvars.ContextVar[str] = contextvars.ContextVar("flow_id", default="?")


class FreezingStore:
    """A store that freezes the calling task right after the step its ``frozen_at`` names."""

    frozen: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, store: fe.Store) -> None:
        self._store = store

    @classmethod
    async def freeze(cls, point: str, flow_id: str) -> None:
        cls.frozen.append((point, flow_id))
        await asyncio.Event().wait()

    async def _after(self, point: str, flow_id: str) -> None:
        if frozen_at.get() == point:
            await self.freeze(point, flow_id)

    async def compare_and_set(self, flow: fe.Flow, expected_version: int) -> bool:
        done = await self._store.compare_and_set(flow, expected_version)
        _flow_id.set(flow.id)
        if done and flow.state == "authorized":
            await self._after("authorized", flow.id)
        elif done and flow.state == "exchanging":
            await self._after("marked", flow.id)
        elif done and flow.state == "exchanged":
            await self._after("exchanged", flow.id)
        return done

    async def acquire(self, key: str, ttl: float) -> fe.Lease | None:
        lease = await self._store.acquire(key, ttl)
        if lease is not None and key.startswith("exchange:"):
            _flow_id.set(key.removeprefix("exchange:"))
            await self._after("leased", _flow_id.get())
        return lease

    async def put_token(self, token: fe.Token) -> None:
        await self._store.put_token(token)
        await self._after("token_saved", _flow_id.get())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class FreezingTransport(HttpxTransport):
    """Sends for real; the task whose boundary is ``sent`` then never gets the answer."""

    async def send(self, request: fe.HttpRequest) -> fe.HttpResponse:
        response = await super().send(request)
        if frozen_at.get() == "sent":
            await FreezingStore.freeze("sent", _flow_id.get())
        return response
