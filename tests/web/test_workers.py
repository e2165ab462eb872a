"""Two workers: two ``flowengine web serve`` processes sharing a store (SECURITY.md 17).

The flow starts on one worker and its callback reaches the other, as behind a
load balancer: it completes, with one token request, and either worker shows
the result. Each run uses its own Redis key prefix or PostgreSQL schema and
removes it afterwards. When ``CI=true`` an unreachable service fails the test;
elsewhere it skips, saying why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import attrs
import httpx
import pytest
from flowengine import PluginError
from flowengine import _plugins as plugins

from tests.conftest import SandboxFixture
from tests.web.conftest import ServeProcess

# Slow lane: two web worker processes.
pytestmark = pytest.mark.slow

REDIS = "redis://127.0.0.1:6379/0"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _redis_unavailable() -> str | None:
    try:
        import redis
    except ImportError:
        return "redis-py is not installed (the redis extra)"
    try:
        with redis.Redis.from_url(REDIS, socket_connect_timeout=0.5, socket_timeout=2) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"no Redis server at {REDIS} ({type(exc).__name__})"
    return None


def _redis_cleanup(prefix: str) -> None:
    import redis

    with redis.Redis.from_url(REDIS, socket_timeout=2) as client:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)


def _postgres_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (the postgres extra)"
    try:
        with psycopg.connect(POSTGRES, connect_timeout=2):
            pass
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {POSTGRES} ({type(exc).__name__})"
    return None


def _postgres_cleanup(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=2) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@attrs.frozen
class SharedStore:
    name: str
    unavailable: Callable[[], str | None]
    new_url: Callable[[str], str]
    cleanup: Callable[[str], None]
    namespace: Callable[[str], str]


STORES = [
    SharedStore(
        "redis",
        _redis_unavailable,
        lambda tag: f"{REDIS}?prefix=fe-web-{tag}:",
        _redis_cleanup,
        lambda tag: f"fe-web-{tag}:",
    ),
    SharedStore(
        "postgres",
        _postgres_unavailable,
        lambda tag: f"{POSTGRES}?schema=fe_web_{tag}",
        _postgres_cleanup,
        lambda tag: f"fe_web_{tag}",
    ),
]


@pytest.fixture(params=STORES, ids=[s.name for s in STORES])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh store URL on a service both workers reach; skipped (failed under CI) if there is none."""
    store: SharedStore = request.param
    reason = store.unavailable()
    if reason is None:
        tag = uuid.uuid4().hex[:16]
        url = store.new_url(tag)
        try:
            plugins.open_store(url)  # opening connects nothing; it proves a plugin answers the URL
        except PluginError as exc:
            reason = f"no installed plugin opens {urlsplit(url).scheme}:// stores ({exc.code})"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{store.name} store: {reason} (CI=true: the service must be running)")
        pytest.skip(f"{store.name} store: {reason}")
    yield url
    store.cleanup(store.namespace(tag))


async def test_a_flow_started_on_one_worker_completes_on_the_other(
    store_url: str, sandbox: SandboxFixture
) -> None:
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_WEB_SECRET": uuid.uuid4().hex * 2}
    args = ("--spec", "podio", "--store", store_url, "--port", "0", "--sandbox")
    workers = [ServeProcess(*args, env=env), ServeProcess(*args, env=env)]
    try:
        a, b = (worker.wait_url() for worker in workers)
        assert a != b
        async with httpx.AsyncClient() as browser:
            started = await browser.get(f"{a}/auth/podio")
            assert started.status_code == 302
            callback = await sandbox.consent(started.headers["location"])
            assert callback.startswith(f"{a}/auth/podio/callback?")
            # The load balancer sends the callback to worker B; cookies are per host, not per port.
            first = await browser.get(b + callback.removeprefix(a))
            assert first.status_code == 303, first.text
            result = first.headers["location"]
            page_b = await browser.get(b + result)
            assert "<h1>Authorized</h1>" in page_b.text
            assert "<strong>user:1001</strong>" in page_b.text
            page_a = await browser.get(a + result)
            assert page_a.text == page_b.text
            replay = await browser.get(callback)  # the same callback, now on worker A
            assert replay.headers["location"] == result
        assert len(sandbox.token_requests()) == 1
    finally:
        statuses = [worker.stop() for worker in workers]
    assert statuses == [0, 0], [worker.stderr for worker in workers]
