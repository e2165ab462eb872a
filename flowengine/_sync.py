"""Engine: the AsyncEngine's API for code without an event loop.

It runs an AsyncEngine on a private event-loop thread, so it also works from
inside a program that has its own loop (a Jupyter kernel, a sync web view).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

from flowengine._callbacks import CallbackInput
from flowengine._driver import AsyncEngine, EngineOptions
from flowengine._records import Flow, Token
from flowengine._spec import FlowSpec
from flowengine._store import Store

__all__ = ["Engine"]

_T = TypeVar("_T")


class _LoopThread:
    """An event loop on a daemon thread, for running the async engine from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="flowengine-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Engine:
    """The synchronous engine: the same API as AsyncEngine, for code without an event loop.

    It runs an AsyncEngine on a private event-loop thread, so it also works from
    inside a program that has its own loop (a Jupyter kernel, a sync web view).
    """

    def __init__(self, spec: FlowSpec | str | Path, **options: Unpack[EngineOptions]) -> None:
        self._runner = _LoopThread()
        try:
            self.engine = AsyncEngine(spec, **options)
        except BaseException:
            self._runner.stop()
            raise

    @property
    def spec(self) -> FlowSpec:
        """The compiled spec."""
        return self.engine.spec

    @property
    def store(self) -> Store:
        """The store (its methods are async: use the engine's methods from sync code)."""
        return self.engine.store

    def start(
        self,
        *,
        scope: str | Sequence[str] | None = None,
        session: str | None = None,
        redirect_uri: str | None = None,
        inputs: Mapping[str, str] | None = None,
        subject: str | None = None,
        connection: Mapping[str, str] | None = None,
    ) -> Flow:
        """See ``AsyncEngine.start``."""
        return self._runner.run(
            self.engine.start(
                scope=scope,
                session=session,
                redirect_uri=redirect_uri,
                inputs=inputs,
                subject=subject,
                connection=connection,
            )
        )

    def start_device(
        self,
        *,
        scope: str | Sequence[str] | None = None,
        subject: str | None = None,
        connection: Mapping[str, str] | None = None,
    ) -> Flow:
        """See ``AsyncEngine.start_device``."""
        return self._runner.run(self.engine.start_device(scope=scope, subject=subject, connection=connection))

    def poll_device(self, flow: Flow | str, *, timeout: float | None = None) -> Flow:
        """See ``AsyncEngine.poll_device``."""
        return self._runner.run(self.engine.poll_device(flow, timeout=timeout))

    def callback(self, callback: CallbackInput, *, session: str | None = None) -> Flow:
        """See ``AsyncEngine.callback``."""
        return self._runner.run(self.engine.callback(callback, session=session))

    def exchange(self, flow_id: str) -> Flow:
        """See ``AsyncEngine.exchange``."""
        return self._runner.run(self.engine.exchange(flow_id))

    def revoke(self, token: Token | str, *, hint: str | None = None) -> None:
        """See ``AsyncEngine.revoke``."""
        self._runner.run(self.engine.revoke(token, hint=hint))

    def grant(
        self,
        grant: str,
        inputs: Mapping[str, str] | None = None,
        *,
        subject: str | None = None,
        connection: Mapping[str, str] | None = None,
        scope: str | None = None,
    ) -> Token:
        """See ``AsyncEngine.grant``."""
        return self._runner.run(
            self.engine.grant(grant, inputs, subject=subject, connection=connection, scope=scope)
        )

    def refresh(self, token: Token | str) -> Token:
        """See ``AsyncEngine.refresh``."""
        return self._runner.run(self.engine.refresh(token))

    def get(self, flow_id: str) -> Flow | None:
        """See ``AsyncEngine.get``."""
        return self._runner.run(self.engine.get(flow_id))

    def token_for(self, flow: Flow) -> Token | None:
        """See ``AsyncEngine.token_for``."""
        return self._runner.run(self.engine.token_for(flow))

    def get_token(self, key: str) -> Token | None:
        """See ``AsyncEngine.get_token``."""
        return self._runner.run(self.engine.get_token(key))

    def tokens(self) -> list[Token]:
        """See ``AsyncEngine.tokens``."""
        return self._runner.run(self.engine.tokens())

    def flows(self, *, state: str | None = None) -> list[Flow]:
        """See ``AsyncEngine.flows``."""
        return self._runner.run(self.engine.flows(state=state))

    def purge(self) -> int:
        """See ``AsyncEngine.purge``."""
        return self._runner.run(self.engine.purge())

    @property
    def unsaved_tokens(self) -> list[Token]:
        """See ``AsyncEngine.unsaved_tokens``."""
        return self.engine.unsaved_tokens

    def is_final(self, flow: Flow) -> bool:
        """See ``AsyncEngine.is_final``."""
        return self.engine.is_final(flow)

    def present(self, flow: Flow, step: str, **detail: Any) -> bool:
        """See ``AsyncEngine.present``."""
        return self.engine.present(flow, step, **detail)

    def close(self) -> None:
        """Close the engine's transport and store, and stop its loop thread."""
        try:
            self._runner.run(self.engine.aclose())
        finally:
            self._runner.stop()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
