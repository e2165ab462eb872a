"""A store's link to Redis: one client and pool per event loop, its scripts, and its errors.

A redis.asyncio pool belongs to the event loop it first ran on, so a store
makes its Connection lazily, inside a running loop, and never shares it.
Everything the driver raises leaves as ``StoreError`` (``store_unavailable``)
naming the server's address, never its password.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from flowengine import FlowError, StoreError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from flowengine_redis import _scripts
from flowengine_redis._url import RedisOptions

__all__ = ["Connection", "driver_errors"]


class Connection:
    """One client (one connection pool) with the store's scripts, bound to the loop it was made in."""

    __slots__ = (
        "acquire",
        "cas",
        "create",
        "delete_flow",
        "loop",
        "put_token",
        "read_flows",
        "redis",
        "release",
        "renew",
    )

    def __init__(self, options: RedisOptions) -> None:
        self.loop = asyncio.get_running_loop()
        self.redis = Redis(
            host=options.host,
            port=options.port,
            db=options.db,
            username=options.username,
            password=options.password,
            ssl=options.ssl,
            socket_timeout=options.timeout,
            socket_connect_timeout=options.connect_timeout,
            # No driver retries: a retried create or compare-and-set whose first attempt did
            # land would report a conflict or a lost race for a write that happened. The engine
            # owns the retry policy; a dead pooled connection is still replaced on checkout.
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        # Registered once: each call sends EVALSHA, and loads the script only if Redis lacks it.
        self.create: AsyncScript = self.redis.register_script(_scripts.CREATE)
        self.cas: AsyncScript = self.redis.register_script(_scripts.CAS)
        self.delete_flow: AsyncScript = self.redis.register_script(_scripts.DELETE_FLOW)
        self.read_flows: AsyncScript = self.redis.register_script(_scripts.READ_FLOWS)
        self.release: AsyncScript = self.redis.register_script(_scripts.RELEASE)
        self.acquire: AsyncScript = self.redis.register_script(_scripts.ACQUIRE)
        self.renew: AsyncScript = self.redis.register_script(_scripts.RENEW)
        self.put_token: AsyncScript = self.redis.register_script(_scripts.PUT_TOKEN)


@contextlib.contextmanager
def driver_errors(options: RedisOptions) -> Iterator[None]:
    """Turn anything the driver raises into ``store_unavailable``; let FlowErrors through.

    Connection refused, timeouts, a server that went away, a refused command:
    the caller learns where the store is and that trying later may help.
    """
    try:
        yield
    except FlowError:
        raise
    except Exception as exc:
        detail = str(exc)
        if options.password:
            detail = detail.replace(options.password, "***")
        raise StoreError(
            f"the Redis store at {options.address} is unavailable: {type(exc).__name__}: {detail[:200]}",
            code="store_unavailable",
            retryable=True,
        ) from exc
