"""The Redis store: flows, tokens and leases shared by many workers on one Redis server.

Selected by ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS),
with options in the query: ``prefix=`` (key prefix, default ``flowengine:``),
``retention=`` (seconds a flow outlives its ``expires_at`` before Redis drops it
by itself, default 3600), ``timeout=`` (seconds to wait for each reply, default
5), ``connect_timeout=`` (seconds to wait for a new connection, default 5) and
``key_file=`` (or ``FLOWENGINE_KEY``) to encrypt records at rest. A server that
is down, refuses or stops answering fails each call with ``store_unavailable``
within those bounds, and the pool reconnects by itself once it is back. Leases
are timed by the Redis server (``SET NX PX``, renewed with ``PEXPIRE``).

redis-py is imported only when a Redis URL is opened: every installed plugin
is asked about every store URL, and most processes never use this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowengine import codec_for, hookimpl, lazy_exports

if TYPE_CHECKING:
    from flowengine_redis._store import RedisStore
    from flowengine_redis._url import RedisOptions, parse_redis_url

__all__ = ["RedisOptions", "RedisStore", "flowengine_store", "parse_redis_url"]


# The store (and its driver) load on first use of the name, not with the plugin; so does the URL's parser.
__getattr__ = lazy_exports(
    __name__, {"RedisStore": "._store", "RedisOptions": "._url", "parse_redis_url": "._url"}
)


@hookimpl
def flowengine_store(url: str) -> RedisStore | None:
    """A RedisStore for ``redis://`` and ``rediss://`` URLs (no connection yet), or None.

    ``ConfigError`` when the URL or its encryption key is wrong, so a typo
    surfaces when the store is opened, not at the first callback.
    """
    from flowengine_redis._url import parse_redis_url

    options = parse_redis_url(url)
    if options is None:
        return None
    from flowengine_redis._store import RedisStore

    return RedisStore(options, codec_for(options.codec_options))
