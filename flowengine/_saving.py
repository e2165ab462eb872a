"""Keeping what a provider answered until the store takes it (SECURITY.md 23).

A token the provider has issued exists nowhere else: with a rotating refresh
token, the old one is already spent. So a save that fails because the store is
away is retried with backoff up to ``deadline`` seconds, and meanwhile the token
is kept in this process (``unsaved``): a refresh in this process uses it rather
than the spent one it replaced. Past the deadline the caller gets
``token_unsaved`` naming the token, the grant is not marked dead, and the
token stays kept and is retried in the background until the store returns or
the engine closes. What holds across processes is in docs/stores.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flowengine._clock import Clock
from flowengine._errors import ErrorCode, FlowError, StoreError
from flowengine._records import Flow, Token
from flowengine._store import Store

__all__ = ["Saver", "store_call"]

log = logging.getLogger("flowengine")
_T = TypeVar("_T")

#: Backoff between save attempts while the store is away (seconds).
_FIRST_DELAY, _MAX_DELAY = 0.05, 2.0


async def store_call(call: Awaitable[_T]) -> _T:
    """Await a store call; anything but a FlowError becomes ``store_unavailable``."""
    try:
        return await call
    except FlowError:
        raise
    except Exception as exc:
        raise StoreError(f"the store failed: {type(exc).__name__}: {str(exc)[:200]}") from exc


class Saver:
    """Saves tokens and flows through store outages, up to a deadline."""

    def __init__(self, store: Store, clock: Clock, *, deadline: float) -> None:
        self.store = store
        self.clock = clock
        self.deadline = deadline
        self._unsaved: dict[str, Token] = {}
        self._background: asyncio.Task[None] | None = None

    def unsaved(self, key: str) -> Token | None:
        """The newest token under ``key`` that this process holds and the store does not yet."""
        return self._unsaved.get(key)

    @property
    def unsaved_tokens(self) -> list[Token]:
        """Every token kept in this process because the store has not taken it yet."""
        return list(self._unsaved.values())

    async def save_token(self, token: Token) -> None:
        """Store ``token``; while the store fails, keep it and retry until the deadline.

        Raises ``StoreError`` (``token_unsaved``) past the deadline; the token stays
        kept and a background task goes on trying.
        """
        key = token.key
        self._unsaved[key] = token
        try:
            await self._until_deadline(lambda: self._put_newest(key))
        except StoreError as exc:
            if not exc.retryable:
                raise
            self._keep_trying()
            raise StoreError(
                f"the token {token.fingerprint} for {key} could not be saved within "
                f"{self.deadline:g} s ({exc.message}); it is kept in this process and saved "
                "when the store answers",
                code=ErrorCode.TOKEN_UNSAVED,
            ) from exc

    async def save_flow(self, flow: Flow, expected_version: int) -> bool:
        """Compare-and-set ``flow`` over ``expected_version``, retrying store failures until the deadline."""
        return await self._until_deadline(
            lambda: store_call(self.store.compare_and_set(flow, expected_version))
        )

    async def delete_token(self, key: str) -> None:
        """Delete the token under ``key`` (a revoked one), retrying store failures until the deadline."""
        self._unsaved.pop(key, None)
        await self._until_deadline(lambda: store_call(self.store.delete_token(key)))

    async def flush(self) -> None:
        """Try once more (within the deadline) to save what is kept; called when the engine closes."""
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        for key in list(self._unsaved):
            try:
                await self._until_deadline(functools.partial(self._put_newest, key))
            except StoreError as exc:
                token = self._unsaved[key]
                log.error(
                    "token %s for %s was never saved (%s): the grant needs a new login",
                    token.fingerprint,
                    key,
                    exc.code,
                )

    async def _put_newest(self, key: str) -> None:
        token = self._unsaved.get(key)
        if token is None:
            return  # saved meanwhile (by the background task, or a newer save)
        await store_call(self.store.put_token(token))
        if self._unsaved.get(key) is token:
            del self._unsaved[key]

    async def _until_deadline(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        deadline = self.clock() + self.deadline
        delay = _FIRST_DELAY
        while True:
            try:
                return await attempt()
            except StoreError as exc:
                if not exc.retryable or self.clock() + delay > deadline:
                    raise
                log.warning("the store failed (%s); trying again in %.2f s", exc.code, delay)
            await self.clock.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    def _keep_trying(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.ensure_future(self._retry_forever())

    async def _retry_forever(self) -> None:
        delay = _FIRST_DELAY
        while self._unsaved:
            for key in list(self._unsaved):
                with contextlib.suppress(StoreError):
                    await self._put_newest(key)
            await self.clock.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)
