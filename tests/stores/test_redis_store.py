"""What only the Redis store does: its URL, its keys, native expiry, and many workers on one server.

The shared suites (test_conformance.py, test_guarantees.py) hold it to the
store contract; these tests look behind it with the raw driver, race two store
objects (two connection pools, as two workers would have), and cut the
network under a live store.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import attrs
import flowengine as fe
import pytest
from flowengine import _plugins as plugins
from flowengine import digest
from flowengine._codec import KEY_ENV, new_store_key

from flowengine_redis import RedisOptions, RedisStore, flowengine_store, parse_redis_url
from tests.stores.backend_redis import BACKEND, keys_under, prefix_of, raw_client
from tests.stores.backends import require
from tests.stores.test_conformance import make_flow, make_token

# --- the URL (no server needed) -------------------------------------------------------------


def test_url_defaults() -> None:
    options = parse_redis_url("redis://")
    assert options == RedisOptions(host="localhost", port=6379, db=0, ssl=False, username=None, password=None)
    assert (options.prefix, options.retention, options.timeout, options.key_file) == (
        "flowengine:",
        3600.0,
        5.0,
        None,
    )
    assert options.address == "redis://localhost:6379/0"
    assert options.connect_timeout == 5.0


def test_url_with_everything() -> None:
    url = (
        "rediss://me:p%40ss@cache.example:6380/3?prefix=app:&retention=90&timeout=0.5&key_file=/k"
        "&connect_timeout=0.25"
    )
    options = parse_redis_url(url)
    assert options is not None
    assert (options.host, options.port, options.db, options.ssl) == ("cache.example", 6380, 3, True)
    assert (options.username, options.password) == ("me", "p@ss")
    assert (options.prefix, options.retention, options.timeout) == ("app:", 90.0, 0.5)
    assert options.connect_timeout == 0.25
    assert options.codec_options == {"key_file": "/k"}
    assert options.address == "rediss://cache.example:6380/3"
    assert "p@ss" not in repr(options)


def test_url_password_only_and_ipv6() -> None:
    options = parse_redis_url("redis://:secret@[::1]:7000")
    assert options is not None
    assert (options.username, options.password, options.host) == (None, "secret", "::1")
    assert options.address == "redis://[::1]:7000/0"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://:secret@host:99999/0", "port"),
        ("redis://:secret@host:6379/zero", "database"),
        ("redis://:secret@host:6379/0?prefx=a:", "unknown option 'prefx'"),
        ("redis://:secret@host:6379/0?prefix=a:&prefix=b:", "given twice"),
        ("redis://:secret@host:6379/0?prefix=", "prefix"),
        ("redis://:secret@host:6379/0?retention=0", "retention"),
        ("redis://:secret@host:6379/0?retention=-5", "retention"),
        ("redis://:secret@host:6379/0?retention=soon", "retention"),
        ("redis://:secret@host:6379/0?timeout=nan", "timeout"),
        ("redis://:secret@host:6379/0#frag", "fragment"),
    ],
)
def test_url_errors_name_the_problem_and_never_the_password(url: str, complaint: str) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        parse_redis_url(url)
    assert caught.value.code == "store_url_invalid"
    assert complaint in caught.value.message
    assert "secret" not in str(caught.value)


def test_the_hook_answers_only_redis_urls_and_connects_to_nothing() -> None:
    assert flowengine_store("memory://") is None
    assert flowengine_store("sqlite:///x.db") is None
    assert flowengine_store("postgresql://localhost/test") is None
    store = plugins.open_store(f"redis://:hunter2@127.0.0.1:{closed_port()}/0")  # nothing listens there
    assert isinstance(store, RedisStore)
    assert isinstance(store, fe.Store)
    assert "hunter2" not in repr(store)


def test_a_bad_key_file_is_refused_when_the_store_is_opened(tmp_path: Path) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        plugins.open_store(f"redis://127.0.0.1/0?key_file={tmp_path / 'missing.key'}")
    assert caught.value.code == "store_key_invalid"


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_plugin_does_not_import_redis_py() -> None:
    code = "import sys, flowengine_redis; assert 'redis' not in sys.modules, 'redis imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# --- against the server ---------------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    require(BACKEND)
    url = BACKEND.new_url(tmp_path)
    yield url
    BACKEND.cleanup(url)


@pytest.fixture
async def two_stores(url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two store objects on one prefix: two connection pools, as two worker processes would have."""
    first, second = open_redis(url), open_redis(url)
    yield first, second
    await first.aclose()
    await second.aclose()


def open_redis(url: str) -> RedisStore:
    store = plugins.open_store(url)
    assert isinstance(store, RedisStore)
    return store


def closed_port() -> int:
    """A local port nobody listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_the_key_layout(url: str) -> None:
    store = open_redis(url)
    prefix = prefix_of(url)
    flow = make_flow(1)
    await store.create(attrs.evolve(flow, authorization_url="https://x/?state=in-the-url"))
    await store.put_token(make_token(1, expires_at=1_500.0))
    await store.put_token(make_token(2, expires_at=None))
    lease = await store.acquire("refresh:podio:user:1", 30)
    assert lease is not None
    await store.aclose()

    with raw_client() as raw:
        names = {k.decode().removeprefix(prefix) for k in keys_under(raw, prefix)}
        assert names == {
            "flow:flow-1",
            f"state:{flow.state_hash}",
            "flows",
            "expiry",
            "token:podio:user:1",
            "token:podio:user:2",
            "tokens",
            "tokens:podio",
            "lease:refresh:podio:user:1",
            # The counts of the operator's view (a hand-made flow has no transition to count).
            "states",
            "in:podio:redirected",
            "providers",
            "health:podio:r",
        }
        fields = raw.hgetall(f"{prefix}flow:flow-1")
        assert set(fields) == {
            b"id",
            b"spec",
            b"state",
            b"state_hash",
            b"version",
            b"created_at",
            b"expires_at",
            b"blob",
        }
        assert (fields[b"spec"], fields[b"state"], fields[b"version"]) == (b"podio", b"redirected", b"1")
        assert raw.get(f"{prefix}state:{flow.state_hash}") == b"flow-1"
        assert raw.zscore(f"{prefix}flows", "flow-1") == 1_001.0
        assert raw.zscore(f"{prefix}expiry", "flow-1") == 2_000.0
        assert set(raw.hgetall(f"{prefix}token:podio:user:2")) == {b"provider", b"expires_at", b"blob"}
        assert raw.zscore(f"{prefix}tokens", "podio:user:1") == 1_500.0
        assert raw.zscore(f"{prefix}tokens", "podio:user:2") == math.inf
        assert raw.zscore(f"{prefix}tokens:podio", "podio:user:2") == math.inf
        assert raw.get(f"{prefix}lease:refresh:podio:user:1") == lease.token.encode()
        assert raw.ttl(f"{prefix}token:podio:user:1") == -1  # tokens outlive their access token
        # The flow is counted in its state until Redis drops it by itself; tokens by health.
        dropped_at = raw.pexpiretime(f"{prefix}flow:flow-1")
        assert raw.zscore(f"{prefix}in:podio:redirected", "flow-1") == dropped_at
        assert raw.smembers(f"{prefix}states") == {b"podio:redirected"}
        assert raw.zrange(f"{prefix}health:podio:r", 0, -1, withscores=True) == [
            (b"podio:user:1", 1_500.0),
            (b"podio:user:2", math.inf),
        ]
        assert raw.smembers(f"{prefix}providers") == {b"podio"}
    assert b"in-the-url" not in BACKEND.raw_dump(url)


async def test_flow_and_state_keys_expire_natively_after_the_retention(url: str) -> None:
    store = open_redis(url + "&retention=120")
    prefix = prefix_of(url)
    now = time.time()
    live = make_flow(1, expires_at=now + 600)
    await store.create(live)
    await store.create(make_flow(2, expires_at=1_000.0))  # on another clock: long past by this one
    with raw_client() as raw:
        for key in (f"{prefix}flow:flow-1", f"{prefix}state:{live.state_hash}"):
            assert 719_000 < raw.pttl(key) <= 720_000
        for key in (f"{prefix}flow:flow-2", f"{prefix}state:{digest('state-2')}"):
            assert 119_000 < raw.pttl(key) <= 120_000  # kept `retention` from now, not dropped at once
        for index in ("flows", "expiry", "tokens"):
            assert raw.pttl(f"{prefix}{index}") < 0

        assert await store.compare_and_set(attrs.evolve(live, version=2, expires_at=now + 6_000), 1)
        for key in (f"{prefix}flow:flow-1", f"{prefix}state:{live.state_hash}"):
            assert 6_119_000 < raw.pttl(key) <= 6_120_000
        assert raw.zscore(f"{prefix}expiry", "flow-1") == now + 6_000
    await store.aclose()


async def test_a_flow_redis_dropped_is_gone_everywhere_and_pruned_from_the_indexes(url: str) -> None:
    store = open_redis(url)
    await store.create(make_flow(1, expires_at=1_000.0))
    await store.create(make_flow(2, expires_at=time.time() + 600))
    with raw_client() as raw:
        # What Redis's own expiry does once flow-1's retention ends (that the keys carry that
        # expiry is test_flow_and_state_keys_expire_natively_after_the_retention's claim).
        prefix = prefix_of(url)
        assert raw.delete(f"{prefix}flow:flow-1", f"{prefix}state:{digest('state-1')}") == 2
    assert await store.get("flow-1") is None
    assert await store.get_by_state(digest("state-1")) is None
    assert [f.id for f in await store.list_flows()] == ["flow-2"]
    with raw_client() as raw:
        prefix = prefix_of(url)
        assert raw.zscore(f"{prefix}flows", "flow-1") is None
        assert raw.zscore(f"{prefix}expiry", "flow-1") is None
    assert await store.purge(2_000.0) == 0  # Redis removed it, not this purge
    await store.aclose()


async def test_two_stores_racing_compare_and_set_have_exactly_one_winner(
    two_stores: tuple[RedisStore, RedisStore],
) -> None:
    first, second = two_stores
    flows = [make_flow(n) for n in range(10)]
    for flow in flows:
        await first.create(flow)
    assert await second.get("flow-0") == flows[0]
    assert first._conn().redis.connection_pool is not second._conn().redis.connection_pool

    racers = [
        (first if i % 2 else second).compare_and_set(attrs.evolve(flow, state=f"s{i}", version=2), 1)
        for flow in flows
        for i in range(20)
    ]
    results = await asyncio.gather(*racers)

    for n, flow in enumerate(flows):
        mine = results[n * 20 : (n + 1) * 20]
        assert mine.count(True) == 1, flow.id
        stored = await second.get(flow.id)
        assert stored is not None and stored.version == 2 and stored.state == f"s{mine.index(True)}"


async def test_two_stores_creating_one_flow_have_one_winner_and_one_conflict(
    two_stores: tuple[RedisStore, RedisStore],
) -> None:
    first, second = two_stores
    results = await asyncio.gather(
        first.create(make_flow(1)), second.create(make_flow(1)), return_exceptions=True
    )
    assert results.count(None) == 1
    [conflict] = [r for r in results if isinstance(r, fe.StoreError)]
    assert conflict.code == "store_conflict" and not conflict.retryable

    same_state = attrs.evolve(make_flow(2), state_hash=make_flow(1).state_hash)
    with pytest.raises(fe.StoreError) as caught:
        await second.create(same_state)
    assert caught.value.code == "store_conflict"
    assert await first.get("flow-2") is None  # nothing half-written


async def test_leases_across_two_stores(url: str, two_stores: tuple[RedisStore, RedisStore]) -> None:
    first, second = two_stores
    held = await first.acquire("refresh:k", 30)
    assert held is not None
    assert await second.acquire("refresh:k", 30) is None
    await second.release(attrs.evolve(held, token="forged"))  # only the owner's token frees it
    assert await second.acquire("refresh:k", 30) is None
    with raw_client() as raw:
        assert 29_000 < raw.pttl(f"{prefix_of(url)}lease:refresh:k") <= 30_000
    await first.release(held)
    taken = await second.acquire("refresh:k", 0.001)  # the engine's probe: rounds up to 1 ms
    assert taken is not None
    results = await asyncio.gather(*(s.acquire("refresh:other", 30) for s in (first, second) * 10))
    assert sum(lease is not None for lease in results) == 1


async def test_listing_filters_in_redis_and_skips_damaged_records_by_name(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_redis(url)
    await store.create(make_flow(1, spec="other"))
    await store.create(make_flow(2, spec="podio", state="failed"))
    await store.create(make_flow(3, spec="podio"))
    await store.put_token(make_token(1, provider="other"))
    await store.put_token(make_token(2))
    BACKEND.corrupt_flow(url, "flow-1")
    BACKEND.corrupt_token(url, "other:user:1")

    with caplog.at_level(logging.WARNING, logger="flowengine.store"):
        # The damaged records are never sent by the filtered queries, so nothing is said.
        assert [f.id for f in await store.list_flows(spec="podio")] == ["flow-2", "flow-3"]
        assert [f.id for f in await store.list_flows(spec="podio", state="redirected")] == ["flow-3"]
        assert [f.id for f in await store.list_flows(state="failed")] == ["flow-2"]
        assert [t.key for t in await store.list_tokens(provider="podio")] == ["podio:user:2"]
        assert caplog.records == []

        assert [f.id for f in await store.list_flows()] == ["flow-2", "flow-3"]
        assert [t.key for t in await store.list_tokens()] == ["podio:user:2"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "'flow-1'" in messages[0] and "'other:user:1'" in messages[1]
    await store.aclose()


async def test_listing_more_flows_than_one_script_call_reads(url: str) -> None:
    store = open_redis(url)
    for n in range(600):
        await store.create(make_flow(n, spec="podio" if n % 3 else "other"))
    with raw_client() as raw:
        raw.delete(f"{prefix_of(url)}flow:flow-500")  # as if Redis had dropped it
    everything = [f.id for f in await store.list_flows()]
    assert everything == [f"flow-{n}" for n in range(600) if n != 500]
    assert len(await store.list_flows(spec="other")) == 200
    with raw_client() as raw:
        assert raw.zcard(f"{prefix_of(url)}flows") == 599
    await store.aclose()


async def test_tokens_without_expiry_never_count_as_expiring(url: str) -> None:
    store = open_redis(url)
    await store.put_token(make_token(1, expires_at=None))
    await store.put_token(make_token(2, expires_at=10.0))
    await store.put_token(make_token(3, expires_at=5.0))
    assert [t.key for t in await store.list_tokens(expiring_before=math.inf)] == [
        "podio:user:3",
        "podio:user:2",
    ]
    assert [t.key for t in await store.list_tokens()][-1] == "podio:user:1"  # by expiry, never last
    await store.aclose()


async def test_two_workers_purging_at_once_count_each_flow_once(
    url: str, two_stores: tuple[RedisStore, RedisStore]
) -> None:
    first, second = two_stores
    for n in range(30):
        await first.create(make_flow(n, expires_at=1_500.0))
    await first.create(make_flow(99, expires_at=2_500.0))
    counts = await asyncio.gather(first.purge(2_000.0), second.purge(2_000.0), first.purge(2_000.0))
    assert sum(counts) == 30
    with raw_client() as raw:
        names = {k.decode().removeprefix(prefix_of(url)) for k in keys_under(raw, prefix_of(url))}
    assert names == {
        "flow:flow-99",
        f"state:{digest('state-99')}",
        "flows",
        "expiry",
        "states",
        "in:podio:redirected",
    }


async def test_purge_keeps_a_flow_whose_expiry_moved_after_it_was_listed(url: str) -> None:
    store = open_redis(url)
    await store.create(make_flow(1, expires_at=2_500.0))
    with raw_client() as raw:  # what purge would see had a compare-and-set moved it meanwhile
        raw.zadd(f"{prefix_of(url)}expiry", {"flow-1": 1_500.0})
    assert await store.purge(2_000.0) == 0
    assert await store.get("flow-1") is not None
    await store.aclose()


async def test_a_key_file_seals_what_is_stored(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "store.key"
    key_file.write_text(new_store_key() + "\n")
    store = open_redis(f"{url}&key_file={key_file}")
    assert store.codec.sealed
    await store.put_token(make_token(5))
    await store.create(make_flow(5))
    assert await store.get_token("podio:user:5") == make_token(5)
    await store.aclose()
    raw = BACKEND.raw_dump(url)
    assert b"access-5" not in raw and b"refresh-5" not in raw and b"verifier" not in raw

    keyless = open_redis(url)
    with pytest.raises(fe.StoreError) as caught:
        await keyless.get("flow-5")
    assert caught.value.code == "store_key_missing"
    await keyless.aclose()


async def test_rediss_urls_speak_tls() -> None:
    store = open_redis(f"rediss://127.0.0.1:{closed_port()}/0")
    assert store._conn().redis.connection_pool.connection_class.__name__ == "SSLConnection"
    await store.aclose()


def test_one_store_used_from_two_event_loops(url: str) -> None:
    store = open_redis(url)  # opened in sync code: no connection, no loop yet
    asyncio.run(store.create(make_flow(1)))
    assert asyncio.run(store.get("flow-1")) == make_flow(1)  # a new loop gets a new pool

    async def get_and_close() -> fe.Flow | None:
        try:
            return await store.get("flow-1")
        finally:
            await store.aclose()

    assert asyncio.run(get_and_close()) == make_flow(1)
    with warnings.catch_warnings():  # the first loop's pool cannot be closed once its loop is gone
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# --- when Redis is not there ----------------------------------------------------------------


CALLS: dict[str, Callable[[RedisStore], Awaitable[object]]] = {
    "create": lambda s: s.create(make_flow(1)),
    "get": lambda s: s.get("flow-1"),
    "get_by_state": lambda s: s.get_by_state(digest("state-1")),
    "list_flows": lambda s: s.list_flows(spec="podio"),
    "compare_and_set": lambda s: s.compare_and_set(make_flow(1), 1),
    "delete": lambda s: s.delete("flow-1"),
    "purge": lambda s: s.purge(2_000.0),
    "put_token": lambda s: s.put_token(make_token(1)),
    "get_token": lambda s: s.get_token("podio:user:1"),
    "list_tokens": lambda s: s.list_tokens(expiring_before=1.0),
    "delete_token": lambda s: s.delete_token("podio:user:1"),
    "acquire": lambda s: s.acquire("k", 1),
    "release": lambda s: s.release(fe.Lease("k", "t", 0.0)),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
async def test_sec20_every_call_on_a_closed_port_is_store_unavailable(
    call: Callable[[RedisStore], Awaitable[object]],
) -> None:
    port = closed_port()
    store = open_redis(f"redis://:hunter2@127.0.0.1:{port}/0?timeout=1")
    with pytest.raises(fe.StoreError) as caught:
        await call(store)
    assert caught.value.code == "store_unavailable" and caught.value.retryable
    assert f"redis://127.0.0.1:{port}/0" in caught.value.message
    assert "hunter2" not in str(caught.value)
    await store.aclose()


class Relay:
    """A TCP relay to the test server that a test can cut and restore, as a network or a restart would."""

    def __init__(self, *, answer: bool = True) -> None:
        self.answer = answer
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if not self.answer:  # swallow everything, say nothing: a hung server
            while await reader.read(4096):
                pass
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers.add(up_writer)
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer), return_exceptions=True)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def test_sec20_redis_going_away_mid_run_is_store_unavailable_and_comes_back(url: str) -> None:
    relay = Relay()
    await relay.start()
    store = open_redis(f"redis://127.0.0.1:{relay.port}/0?prefix={prefix_of(url)}&timeout=1")
    await store.create(make_flow(1))
    await store.put_token(make_token(1))

    await relay.stop()  # the server goes away under a pool with live connections
    for call in (
        store.get("flow-1"),
        store.compare_and_set(make_flow(1), 1),
        store.get_token("podio:user:1"),
    ):
        with pytest.raises(fe.StoreError) as caught:
            await call
        assert caught.value.code == "store_unavailable"
        assert f"127.0.0.1:{relay.port}" in caught.value.message

    await relay.start()  # back on the same port: the same store recovers without reopening
    assert await store.get("flow-1") == make_flow(1)
    await store.aclose()
    await relay.stop()


async def test_a_server_that_never_answers_times_out_as_store_unavailable() -> None:
    relay = Relay(answer=False)
    await relay.start()
    store = open_redis(f"redis://127.0.0.1:{relay.port}/0?timeout=0.2")
    with pytest.raises(fe.StoreError) as caught:
        async with asyncio.timeout(15):  # an upper bound far above the 0.2 s timeout, not a window
            await store.get("flow-1")
    assert caught.value.code == "store_unavailable"
    await store.aclose()
    await relay.stop()


async def test_tokens_stored_before_counting_are_counted_on_the_first_read(url: str) -> None:
    """A token in no health set (written by a flowengine before counting) is filed when counts are read."""
    store = open_redis(url)
    prefix = prefix_of(url)
    live, dead = make_token(1, expires_at=1_500.0), attrs.evolve(make_token(2), dead=True, dead_at=900.0)
    await store.put_token(live)
    await store.put_token(dead)
    with raw_client() as raw:  # as an older flowengine left them: indexed, in no health set
        for which in ("r", "n", "dead"):
            raw.delete(f"{prefix}health:podio:{which}")
    counts = await store.token_counts(now=1_000.0, within=600)
    assert {(c.health.value, c.count) for c in counts.counts} == {("expiring", 1), ("dead", 1)}
    with raw_client() as raw:
        assert raw.zscore(f"{prefix}health:podio:dead", dead.key) == 900.0
    await store.aclose()


async def test_a_compare_and_set_from_a_state_the_history_does_not_name_moves_the_count(url: str) -> None:
    """The set a flow leaves is named by its history; a record that says otherwise is read and retried."""
    store = open_redis(url)
    start = fe.HistoryEntry(1_000.0, "start", "", "redirected")
    flow = attrs.evolve(make_flow(1), history=(start,))
    await store.create(flow)
    wrong = fe.HistoryEntry(1_010.0, "callback", "elsewhere", "authorized")  # a hand-made record
    moved = attrs.evolve(flow, state="authorized", version=2, history=(start, wrong))
    assert await store.compare_and_set(moved, 1)
    states = {(c.state, c.count) for c in (await store.flow_counts(since=0)).states}
    assert states == {("authorized", 1)}
    await store.aclose()
