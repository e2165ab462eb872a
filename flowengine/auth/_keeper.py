"""The token an HTTP client attaches: kept in memory, refreshed ahead of expiry and after a 401.

One ``TokenKeeper`` serves one auth object of any HTTP library. It decides; the
library adapters (``_httpx``, ``_aiohttp``, ``_requests``) only move headers and
responses. Every refresh goes through the engine's ``refresh()``, which is
single-flight within a process and leased across processes through the store, so
a burst of requests that all find the token expiring sends one refresh request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from urllib.parse import urlsplit

# The public names only: the engine's modules behind them are being reshaped.
from flowengine import AsyncEngine, ConfigError, Engine, FlowStateError, Token

__all__ = ["DEFAULT_MARGIN", "Origin", "TokenKeeper", "origin_of", "refreshes_after", "should_retry"]

log = logging.getLogger("flowengine.auth")

#: Seconds before ``expires_at`` at which a token is refreshed instead of sent.
DEFAULT_MARGIN = 60.0

#: (scheme, host, port), lower-cased, the port filled in for http and https.
Origin = tuple[str, str, int | None]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin:
    """The origin of ``url`` (RFC 6454): where a token attached to a request to it goes."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # no origin of ours has an invalid port
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def refreshes_after(status: int, sent: Token) -> bool:
    """True when a response with ``status`` to a request sent with ``sent`` calls for a refresh.

    Only a 401 does (RFC 6750: the token is expired, revoked or unknown); a token
    without a refresh token cannot be refreshed, so its 401 goes back to the caller.
    """
    return status == 401 and sent.refresh_token is not None


def should_retry(sent: Token, fresh: Token, *, replayable: bool) -> bool:
    """True when a request refused with ``sent`` is worth sending once more with ``fresh``.

    A body that cannot be replayed (a generator, a file, a stream) was consumed by
    the first attempt: sending it again would send a different request.
    """
    return replayable and fresh.access_token != sent.access_token


class TokenKeeper:
    """The current token under one store key, for one auth object, sync or async."""

    def __init__(self, engine: AsyncEngine | Engine, *, key: str, margin: float = DEFAULT_MARGIN) -> None:
        if not isinstance(engine, AsyncEngine | Engine):
            raise ConfigError(f"expected an AsyncEngine or an Engine, got {type(engine).__name__}")
        if not isinstance(key, str) or not key:
            raise ConfigError("key must be a token's store key, e.g. token.key ('provider:type:id')")
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < math.inf:
            raise ConfigError(f"margin must be a number of seconds >= 0, got {margin!r}")
        self.engine = engine
        self.key = key
        self.margin = float(margin)
        self._token: Token | None = None
        self._origin: Origin | None = None
        # Sync clients call from many threads; an async client's tasks never wait on it.
        self._lock = threading.Lock()

    def serves(self, url: str) -> bool:
        """True when a request to ``url`` may carry the token: the origin of the first one that did.

        The first request this keeper authenticates pins its origin. A request to any
        other origin (a redirect's target, another API on the same client) is sent
        without the token, and its 401 is never acted upon (SECURITY 37).
        """
        origin = origin_of(url)
        with self._lock:
            if self._origin is None:
                self._origin = origin
            return origin == self._origin

    def carried(self, url: str, authorization: str | None, sent: Token) -> bool:
        """True when a request to ``url`` that got an answer went to our origin with ``sent``.

        A 401 is acted upon (refresh, retry) only then: a redirect's target that
        answers 401 saw no token of ours, or is another origin, and its 401 goes back
        to the caller as it is.
        """
        with self._lock:
            pinned = self._origin
        return origin_of(url) == pinned and authorization == sent.authorization_header()

    def _now(self) -> float:
        inner = self.engine.engine if isinstance(self.engine, Engine) else self.engine
        return inner.clock()

    def _due(self, token: Token) -> bool:
        """Refresh before sending: the token expires within the margin and can be refreshed."""
        return token.refresh_token is not None and token.expires_within(self.margin, self._now())

    def _found(self, token: Token | None) -> Token:
        if token is None:
            raise FlowStateError(f"no token {self.key!r} in the store", code="token_unknown")
        return token

    def _remember(self, token: Token) -> Token:
        """Keep ``token`` unless the one kept was obtained later (a slower caller lost the race)."""
        with self._lock:
            kept = self._token
            if kept is None or token.obtained_at >= kept.obtained_at:
                self._token = token
        return token

    # --- async clients: an AsyncEngine directly, a sync Engine on a worker thread ---

    async def current(self) -> Token:
        """The token to send now: the kept one, read from the store once, refreshed when due."""
        token = self._token or self._found(await self._get())
        if self._due(token):
            log.debug("refreshing token %s ahead of its expiry", token.fingerprint)
            token = await self._refresh(token)
        return self._remember(token)

    async def after_401(self, sent: Token) -> Token:
        """The token to retry with after ``sent`` was refused: refreshed, or already refreshed."""
        log.debug("token %s was refused (401): refreshing", sent.fingerprint)
        return self._remember(await self._refresh(sent))

    async def _get(self) -> Token | None:
        if isinstance(self.engine, AsyncEngine):
            return await self.engine.get_token(self.key)
        return await asyncio.to_thread(self.engine.get_token, self.key)

    async def _refresh(self, token: Token) -> Token:
        if isinstance(self.engine, AsyncEngine):
            return await self.engine.refresh(token)
        return await asyncio.to_thread(self.engine.refresh, token)

    # --- sync clients: a sync Engine only ---

    def sync_engine(self) -> Engine:
        """The sync Engine; an AsyncEngine cannot serve a sync client (its loop is not ours)."""
        if isinstance(self.engine, Engine):
            return self.engine
        raise ConfigError(
            "an AsyncEngine serves async clients (httpx.AsyncClient, aiohttp): "
            "use the sync Engine with httpx.Client or requests"
        )

    def current_sync(self) -> Token:
        """See ``current``."""
        engine = self.sync_engine()
        token = self._token or self._found(engine.get_token(self.key))
        if self._due(token):
            log.debug("refreshing token %s ahead of its expiry", token.fingerprint)
            token = engine.refresh(token)
        return self._remember(token)

    def after_401_sync(self, sent: Token) -> Token:
        """See ``after_401``."""
        log.debug("token %s was refused (401): refreshing", sent.fingerprint)
        return self._remember(self.sync_engine().refresh(sent))
