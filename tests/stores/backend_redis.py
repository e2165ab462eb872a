"""The Redis store: the server on 127.0.0.1:6379, one fresh key prefix per test.

Other runs (and other engineers) share the server, so nothing here flushes a
database: each URL gets its own ``prefix=`` and ``cleanup`` deletes only the
keys under it. The helpers use the synchronous driver directly, never the store.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import flowengine as fe
import redis
from flowengine import _plugins as plugins

HOST, PORT, DB = "127.0.0.1", 6379, 0


def prefix_of(url: str) -> str:
    """The key prefix a test URL asks for."""
    return parse_qs(urlsplit(url).query)["prefix"][0]


def raw_client() -> redis.Redis:
    """A plain synchronous client to the test server, for looking behind the store's back."""
    # Bounds for a loaded machine (0.5 s to connect was a window under a second full run).
    return redis.Redis(host=HOST, port=PORT, db=DB, socket_timeout=10, socket_connect_timeout=5)


def keys_under(client: redis.Redis, prefix: str) -> list[bytes]:
    """Every key under ``prefix`` (SCAN, with the prefix's glob characters escaped)."""
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
    return sorted(client.scan_iter(match=pattern, count=500))


class RedisBackend:
    """The Redis server on 127.0.0.1:6379, isolated per URL by a random key prefix."""

    name = "redis"
    durable = True
    upstream = (HOST, PORT)

    @functools.cache  # noqa: B019 - one module-level instance; ask the server once per run
    def unavailable(self) -> str | None:
        try:
            with raw_client() as client:
                client.ping()
        except (redis.RedisError, OSError) as exc:
            return f"no Redis server at {HOST}:{PORT} ({type(exc).__name__})"
        return None

    def new_url(self, tmp_path: Path) -> str:
        return f"redis://{HOST}:{PORT}/{DB}?prefix=fe-test-{uuid.uuid4().hex}:"

    def open(self, url: str, clock: Callable[[], float]) -> fe.Store:
        return plugins.open_store(url)  # leases are timed by Redis itself

    def via(self, url: str, host: str, port: int) -> str:
        return url.replace(f"{HOST}:{PORT}", f"{host}:{port}", 1) + "&timeout=1&connect_timeout=1"

    def age_leases(self, url: str, seconds: float) -> None:
        """Take ``seconds`` off every lease's time to live (gone when none is left)."""
        with raw_client() as client:
            for key in keys_under(client, prefix_of(url) + "lease:"):
                left = client.pttl(key) - round(seconds * 1000)
                if left > 0:
                    client.pexpire(key, left)
                else:
                    client.delete(key)

    def cleanup(self, url: str) -> None:
        with raw_client() as client:
            keys = keys_under(client, prefix_of(url))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])

    def corrupt_flow(self, url: str, flow_id: str) -> None:
        with raw_client() as client:
            key = f"{prefix_of(url)}flow:{flow_id}"
            assert client.exists(key)
            client.hset(key, "blob", b"\x00{not json")

    def corrupt_token(self, url: str, key: str) -> None:
        with raw_client() as client:
            name = f"{prefix_of(url)}token:{key}"
            assert client.exists(name)
            client.hset(name, "blob", b"\x00{not json")

    def raw_dump(self, url: str) -> bytes:
        """Every key name and value under the URL's prefix: strings, hash fields, set members."""
        out = bytearray()
        with raw_client() as client:
            for key in keys_under(client, prefix_of(url)):
                out += key + b"\n"
                kind = client.type(key)
                if kind == b"string":
                    out += client.get(key) or b""
                elif kind == b"hash":
                    for field, value in client.hgetall(key).items():
                        out += field + b"=" + value + b"\n"
                elif kind == b"zset":
                    for member in client.zrange(key, 0, -1):
                        out += member + b"\n"
                elif kind == b"set":
                    out += b"\n".join(client.smembers(key))
                elif kind == b"list":
                    out += b"\n".join(client.lrange(key, 0, -1))
                out += b"\n"
        return bytes(out)


BACKEND = RedisBackend()
