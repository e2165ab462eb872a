"""One worker process's engines, shared limiter and event loop.

Celery runs tasks in threads (the ``threads`` pool, this plugin's default) or
in forked processes; the engine is async. So each process keeps one event loop
on a thread of its own, one ``AsyncEngine`` per spec on it (their store pools,
transports and single-flight shared by all the process's tasks), and one
connection to the shared limiter. Made on first use in each process (a fork
gets its own), closed when the worker shuts down, which saves any token the
store has not taken yet (``AsyncEngine.aclose``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from flowengine import AsyncEngine, Client, TransportConfig, load_spec, open_sandbox, open_transport
from flowengine.cli import resolve_client

from ._limiter import SharedLimiter, open_backend
from ._settings import FleetSettings, shown_url
from ._transport import FleetTransport

__all__ = ["FleetRuntime", "close_runtime", "runtime"]

log = logging.getLogger("flowengine.celery")
_T = TypeVar("_T")


class FleetRuntime:
    """The engines of one process, on a private loop; ``run`` is how a task thread uses them."""

    def __init__(
        self, settings: FleetSettings, *, transport_config: TransportConfig = TransportConfig()
    ) -> None:
        self.settings = settings
        self.transport_config = transport_config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="flowengine-fleet", daemon=True)
        self._thread.start()
        hold = transport_config.timeout + transport_config.connect_timeout + 5.0
        self.limiter = SharedLimiter(
            open_backend(settings.limiter), settings.account_limit, settings.client_limit, hold=hold
        )
        self._engines: dict[str, AsyncEngine] = {}
        self._making: asyncio.Lock | None = None

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the process's loop and wait for it (from a task's thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def engine(self, spec: str) -> AsyncEngine:
        """The engine of a served spec, made on first use (client and endpoints from this worker's config)."""
        engine = self._engines.get(spec)
        if engine is not None:
            return engine
        if self._making is None:
            self._making = asyncio.Lock()
        async with self._making:
            if spec not in self._engines:
                self._engines[spec] = await asyncio.to_thread(self._make_engine, spec)
            return self._engines[spec]

    def _make_engine(self, name: str) -> AsyncEngine:
        spec = load_spec(name)
        client: Client
        endpoints: dict[str, str] = {}
        if self.settings.sandbox:
            with open_sandbox(spec, self.settings.sandbox) as box:  # checks that it answers
                client, endpoints = box.client, dict(box.endpoints)
        else:
            client = resolve_client(name, prompt=False).client
        transport = FleetTransport(
            open_transport(self.transport_config),
            self.limiter,
            rate_limit_status=spec.token.rate_limit_status,
            max_wait=self.settings.max_wait,
        )
        store = shown_url(self.settings.store)
        log.info("engine for %s (client %s), store %s", name, client.client_id, store)
        return AsyncEngine(
            spec,
            client=client,
            store=self.settings.store,
            transport=transport,
            endpoints=endpoints,
            retry=self.settings.retry,
            lease_ttl=self.settings.lease_ttl,
            transport_config=self.transport_config,
        )

    async def _aclose(self) -> None:
        for engine in self._engines.values():
            try:
                await engine.aclose()
            except Exception:
                log.exception("closing the %s engine failed", engine.spec.name)
        self._engines.clear()
        await self.limiter.aclose()

    def close(self) -> None:
        """Close the engines (saving what the store has not taken) and the limiter; stop the loop."""
        try:
            self.run(self._aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


_lock = threading.Lock()
_current: tuple[int, FleetRuntime] | None = None


def runtime(settings: FleetSettings) -> FleetRuntime:
    """This process's runtime, made on first use (again after a fork: a child has its own)."""
    global _current
    with _lock:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), FleetRuntime(settings))
        return _current[1]


def close_runtime() -> None:
    """Close this process's runtime, if it made one (the worker is shutting down)."""
    global _current
    with _lock:
        current, _current = _current, None
    if current is not None and current[0] == os.getpid():
        current[1].close()
