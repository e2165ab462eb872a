"""What only the PostgreSQL store does: its URL, migrations, two pools racing, an unreachable server."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import flowengine as fe
import pytest
from flowengine import _plugins as plugins
from flowengine import digest
from flowengine._codec import KEY_ENV, new_store_key

from flowengine_postgres import SCHEMA_VERSION, PostgresStore, flowengine_store, parse_url
from tests.stores.backend_postgres import BACKEND, connect, schema_of
from tests.stores.backends import require
from tests.stores.test_conformance import make_flow, make_token

SECRET = "Sup3r-Secret-pw"


@pytest.fixture
def server() -> None:
    """Skip (or fail, under CI) when the test server is not running."""
    require(BACKEND)


@pytest.fixture
def url(server: None, tmp_path: Path) -> Iterator[str]:
    url = BACKEND.new_url(tmp_path)
    yield url
    BACKEND.cleanup(url)


@pytest.fixture
async def open_pg(url: str) -> AsyncIterator[Callable[..., fe.Store]]:
    """Open stores on the test schema (``open_pg("&option=…")``); all closed after the test, failed or not."""
    opened: list[fe.Store] = []

    def open_store(options: str = "") -> fe.Store:
        opened.append(plugins.open_store(url + options))
        return opened[-1]

    yield open_store
    for store in opened:
        await store.aclose()


@pytest.fixture
def two(open_pg: Callable[..., fe.Store]) -> tuple[fe.Store, fe.Store]:
    """Two store objects on one schema: two pools, as two workers would have."""
    return open_pg(), open_pg()


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``query`` with ``{s}`` standing for the URL's (quoted) schema."""
    with connect() as conn:
        return list(conn.execute(query.replace("{s}", f'"{schema_of(url)}"'), params).fetchall())


# -- the URL -------------------------------------------------------------------


def test_url_parts_and_defaults() -> None:
    parsed = parse_url(f"postgresql://alice:{SECRET}%40x@db.example:6543/app%20db")
    assert (parsed.host, parsed.port, parsed.dbname) == ("db.example", 6543, "app db")
    assert (parsed.user, parsed.password) == ("alice", f"{SECRET}@x")
    assert (parsed.schema, parsed.min_size, parsed.max_size, parsed.key_file) == ("flowengine", 1, 10, None)
    assert parsed.address == "alice@db.example:6543/app db"
    assert SECRET not in repr(parsed)
    assert parsed.connect_kwargs()["password"] == f"{SECRET}@x"
    assert parsed.connect_kwargs()["connect_timeout"] == 10
    assert parsed.command_timeout == 5.0


def test_url_options_and_the_postgres_alias() -> None:
    parsed = parse_url(
        "postgres://db/app?schema=tenant_1&min_size=2&max_size=4&key_file=/k&sslmode=require&connect_timeout=3"
    )
    assert (parsed.port, parsed.user, parsed.password) == (5432, None, None)
    assert (parsed.schema, parsed.min_size, parsed.max_size, parsed.key_file) == ("tenant_1", 2, 4, "/k")
    kwargs = parsed.connect_kwargs()
    assert kwargs["sslmode"] == "require" and kwargs["connect_timeout"] == 3
    assert "user" not in kwargs and "password" not in kwargs
    assert parse_url("postgresql://u@[::1]:5433/db").address == "u@[::1]:5433/db"
    assert parse_url("postgresql://h/db?min_size=20").max_size == 20  # the default grows to fit
    assert parse_url("postgresql://h/db?command_timeout=0.25").command_timeout == 0.25


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        ("@/db", "no host"),
        ("@h:99999/db", "port"),
        ("@h:0/db", "port"),
        ("@h:five/db", "port"),
        ("@h", "no database"),
        ("@h/", "no database"),
        ("@[::1/db", "cannot be parsed"),
        ("#x@h/db", "fragment"),
        ("@h/db?schema=bad-name", "schema='bad-name'"),
        ("@h/db?schema=1abc", "plain identifier"),
        (f"@h/db?schema={'a' * 64}", "plain identifier"),
        ("@h/db?schema=pg_temp", "reserved"),
        ("@h/db?shema=x", "unknown option 'shema'"),
        ("@h/db?password=x", "unknown option 'password'"),
        ("@h/db?schema=a&schema=b", "given twice"),
        ("@h/db?schema=", "empty"),
        ("@h/db?min_size=-1", "min_size"),
        ("@h/db?min_size=two", "min_size"),
        ("@h/db?max_size=0", "max_size"),
        ("@h/db?min_size=5&max_size=2", "smaller than min_size"),
        ("@h/db?connect_timeout=soon", "connect_timeout"),
        ("@h/db?command_timeout=0", "command_timeout"),
        ("@h/db?command_timeout=inf", "command_timeout"),
        ("@h/db?command_timeout=soon", "command_timeout"),
    ],
)
def test_a_bad_url_is_refused_naming_the_problem_not_the_password(tail: str, problem: str) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        plugins.open_store(f"postgresql://alice:{SECRET}{tail}")
    assert caught.value.code == "store_url_invalid"
    assert problem in caught.value.message
    assert SECRET not in str(caught.value)


def test_the_hook_takes_only_postgres_urls_and_does_not_connect() -> None:
    assert flowengine_store("memory://") is None
    assert flowengine_store("sqlite:///tmp/x.db") is None
    assert flowengine_store("postgresqlx://h/db") is None
    store = plugins.open_store(f"POSTGRESQL://u:{SECRET}@127.0.0.1:1/db?schema=s")  # port 1: nothing listens
    assert isinstance(store, PostgresStore) and isinstance(store, fe.Store)
    assert repr(store) == "PostgresStore('u@127.0.0.1:1/db', schema='s')"


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_plugin_does_not_import_psycopg() -> None:
    code = "import sys, flowengine_postgres; print('psycopg' in sys.modules, 'psycopg_pool' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


# -- an unreachable server -------------------------------------------------------


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port bound by no listener: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_sec20_an_unreachable_server_is_store_unavailable_naming_the_address_not_the_password(
    closed_port: int,
) -> None:
    store = plugins.open_store(f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port}/test")
    calls = [store.get("flow-1"), store.list_flows(), store.put_token(make_token()), store.acquire("k", 1)]
    for call in calls:
        with pytest.raises(fe.StoreError) as caught:
            async with asyncio.timeout(15):  # refused at once, not after a pool timeout: a bound
                await call
        error = caught.value
        assert error.code == "store_unavailable" and error.retryable
        assert f"127.0.0.1:{closed_port}/test" in error.message
        assert error.__cause__ is None
        shown = str(error) + repr(error) + "".join(traceback.format_exception(error))
        assert SECRET not in shown
    await store.aclose()


async def test_a_missing_database_is_store_unavailable_naming_it(server: None) -> None:
    store = plugins.open_store(f"postgresql://postgres:{SECRET}@127.0.0.1:5432/fe_no_such_db")
    with pytest.raises(fe.StoreError) as caught:
        await store.get("x")
    assert caught.value.code == "store_unavailable"
    assert "127.0.0.1:5432/fe_no_such_db" in caught.value.message
    assert "does not exist" in caught.value.message
    assert SECRET not in str(caught.value)


# -- migrations ------------------------------------------------------------------


async def test_migrations_run_once_when_stores_open_together(
    url: str, open_pg: Callable[..., fe.Store], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowengine.store")
    stores = [open_pg() for _ in range(5)]
    # return_exceptions: a failure must not leave the other openings in flight.
    assert await asyncio.gather(*(s.list_flows() for s in stores), return_exceptions=True) == [[]] * 5
    applied = [r for r in caplog.records if "applied migration" in r.getMessage()]
    assert len(applied) == SCHEMA_VERSION
    assert rows(url, "SELECT version FROM {s}.schema_version ORDER BY 1") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)
    ]

    caplog.clear()
    await open_pg().list_flows()
    assert not [r for r in caplog.records if "applied migration" in r.getMessage()]
    tables = rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema_of(url),))
    assert tables == [
        ("flow_states",),
        ("flow_steps",),
        ("flows",),
        ("leases",),
        ("schema_version",),
        ("token_counts",),
        ("tokens",),
    ]


async def test_a_schema_newer_than_this_flowengine_is_refused(
    url: str, open_pg: Callable[..., fe.Store]
) -> None:
    await open_pg().list_flows()
    rows(url, "INSERT INTO {s}.schema_version (version) VALUES (%s) RETURNING version", (SCHEMA_VERSION + 1,))
    with pytest.raises(fe.StoreError) as caught:
        await open_pg().list_flows()
    assert caught.value.code == "store_unavailable" and not caught.value.retryable
    assert "newer" in caught.value.message


# -- two workers at once -----------------------------------------------------------


async def test_compare_and_set_across_two_stores_has_one_winner(two: tuple[fe.Store, fe.Store]) -> None:
    first, second = two
    flow = make_flow(1)
    await first.create(flow)
    moves = [attrs.evolve(flow, state=f"s{i}", version=2) for i in range(20)]
    results = await asyncio.gather(
        *((first, second)[i % 2].compare_and_set(m, 1) for i, m in enumerate(moves))
    )
    assert results.count(True) == 1
    winner = moves[results.index(True)]
    assert await first.get(flow.id) == winner
    assert await second.get(flow.id) == winner


async def test_leases_are_exclusive_across_two_pools(two: tuple[fe.Store, fe.Store], url: str) -> None:
    first, second = two
    leases = await asyncio.gather(*((first, second)[i % 2].acquire("refresh:x", 30) for i in range(40)))
    held = [lease for lease in leases if lease is not None]
    assert len(held) == 1
    assert await first.acquire("refresh:x", 30) is None
    assert await second.acquire("refresh:x", 30) is None
    await second.release(held[0])  # the owner token proves ownership, whichever pool releases
    taken = await second.acquire("refresh:x", 30)
    assert taken is not None
    await first.release(held[0])  # stale: does not free the new holder's lease
    assert await first.acquire("refresh:x", 30) is None
    assert await first.renew(taken, 30) is not None  # a lease is renewed by any pool that holds its token
    BACKEND.age_leases(url, 31)  # 31 s of database time pass: the lease runs out
    assert await first.acquire("refresh:x", 30) is not None


async def test_leases_follow_the_database_clock_not_the_workers(
    two: tuple[fe.Store, fe.Store], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two
    lease = await first.acquire("refresh:y", 30)
    assert lease is not None
    ((db_now,),) = rows(url, "SELECT extract(epoch FROM clock_timestamp())::double precision")
    assert db_now < lease.expires_at <= db_now + 30
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86_400)  # this worker's clock runs a day ahead
    assert await second.acquire("refresh:y", 30) is None


async def test_create_with_a_taken_id_or_state_is_a_conflict(two: tuple[fe.Store, fe.Store]) -> None:
    first, second = two
    await first.create(make_flow(1))
    await first.create(make_flow(2))
    for clash in (make_flow(1), attrs.evolve(make_flow(3), state_hash=digest("state-1"))):
        with pytest.raises(fe.StoreError) as caught:
            await second.create(clash)
        assert caught.value.code == "store_conflict" and not caught.value.retryable
    onto_taken_state = attrs.evolve(make_flow(2), state_hash=digest("state-1"), version=2)
    with pytest.raises(fe.StoreError) as caught:
        await second.compare_and_set(onto_taken_state, 1)
    assert caught.value.code == "store_conflict"


# -- what is stored, and what is read back ---------------------------------------------


async def test_rows_keep_query_fields_in_the_clear_and_never_the_authorization_url(
    url: str, open_pg: Callable[..., fe.Store]
) -> None:
    store = open_pg()
    await store.create(attrs.evolve(make_flow(1), authorization_url="https://x/?state=in-the-url"))
    await store.put_token(make_token(1, expires_at=None))
    await store.aclose()
    assert rows(
        url, "SELECT id, spec, state, state_hash, version, created_at, expires_at FROM {s}.flows"
    ) == [("flow-1", "podio", "redirected", digest("state-1"), 1, 1001.0, 2000.0)]
    assert rows(url, "SELECT key, provider, expires_at FROM {s}.tokens") == [("podio:user:1", "podio", None)]
    raw = BACKEND.raw_dump(url)
    assert b"in-the-url" not in raw and b"authorization_url" not in raw


async def test_damaged_records_are_skipped_with_a_warning_and_filters_never_read_them(
    url: str, open_pg: Callable[..., fe.Store], caplog: pytest.LogCaptureFixture
) -> None:
    store = open_pg()
    await store.create(make_flow(1))
    await store.create(make_flow(2, spec="other"))
    await store.put_token(make_token(1, expires_at=1_500.0))
    await store.put_token(make_token(2, provider="other", expires_at=9_000.0))
    BACKEND.corrupt_flow(url, "flow-2")
    BACKEND.corrupt_token(url, "other:user:2")

    with caplog.at_level(logging.WARNING, logger="flowengine.store"):
        assert [f.id for f in await store.list_flows()] == ["flow-1"]
        assert [t.key for t in await store.list_tokens()] == ["podio:user:1"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "'flow-2'" in messages[0] and "'other:user:2'" in messages[1]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flowengine.store"):  # SQL filters out the damaged rows
        assert [f.id for f in await store.list_flows(spec="podio")] == ["flow-1"]
        assert [t.key for t in await store.list_tokens(provider="podio")] == ["podio:user:1"]
        assert [t.key for t in await store.list_tokens(expiring_before=2_000.0)] == ["podio:user:1"]
    assert caplog.records == []


async def test_purge_also_sweeps_expired_leases(url: str, open_pg: Callable[..., fe.Store]) -> None:
    store = open_pg()
    await store.create(make_flow(1, expires_at=1_500.0))
    await store.create(make_flow(2, expires_at=2_500.0))
    assert await store.acquire("exchange:gone", 10) is not None
    BACKEND.age_leases(url, 11)  # its holder died 11 s ago
    assert await store.acquire("exchange:live", 30) is not None
    assert await store.purge(2_000.0) == 1
    assert rows(url, "SELECT key FROM {s}.leases") == [("exchange:live",)]


async def test_key_file_seals_records_and_a_keyless_store_refuses_them(
    url: str, open_pg: Callable[..., fe.Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "store.key"
    key_file.write_text(new_store_key())
    sealed = open_pg(f"&key_file={key_file}")
    token = make_token(4)
    await sealed.put_token(token)
    assert await sealed.get_token(token.key) == token
    await sealed.aclose()
    assert token.access_token.encode() not in BACKEND.raw_dump(url)
    with pytest.raises(fe.StoreError) as caught:
        await open_pg().get_token(token.key)
    assert caught.value.code == "store_key_missing"


async def test_values_postgres_cannot_hold_are_a_typed_error(open_pg: Callable[..., fe.Store]) -> None:
    store = open_pg()
    with pytest.raises(fe.StoreError) as caught:
        await store.get("nul\x00byte")
    assert caught.value.code == "store_unavailable" and not caught.value.retryable
    assert await store.get("flow-1") is None  # the pool is still fine


async def test_a_connection_the_server_dropped_is_replaced(
    url: str, open_pg: Callable[..., fe.Store]
) -> None:
    store = open_pg("&min_size=1&max_size=1&application_name=fe_drop_test")
    await store.create(make_flow(1))
    terminated = rows(
        url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'fe_drop_test'"
    )
    assert terminated == [(True,)]
    # The first call fails only if it beat the termination to the connection; then it may be retried.
    (first,) = await asyncio.gather(store.get("flow-1"), return_exceptions=True)
    assert first == make_flow(1) or (
        isinstance(first, fe.StoreError) and first.code == "store_unavailable" and first.retryable
    )
    assert await store.get("flow-1") == make_flow(1)


async def test_sec23_connections_the_server_ended_between_calls_are_replaced_before_a_call_meets_them(
    url: str, open_pg: Callable[..., fe.Store]
) -> None:
    """A restart or an ended session tells the client (a FATAL notice, then the end of the stream):
    the pool's check sees it on the idle connection, without a round trip, and replaces it."""
    name = f"fe_ended_{uuid.uuid4().hex[:12]}"
    store = open_pg(f"&min_size=2&max_size=2&application_name={name}")
    await store.create(make_flow(1))
    await asyncio.gather(*(store.get("flow-1") for _ in range(4)))  # both connections used
    ended = rows(  # each backend has exited (and said so) when this returns
        url,
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s",
        (name,),
    )
    assert ended == [(True,), (True,)]
    for _ in range(4):  # every pooled connection handed out again: none fails a call
        assert await store.get("flow-1") == make_flow(1)


# -- event loops -------------------------------------------------------------------------


async def test_a_store_belongs_to_the_loop_that_opened_it(open_pg: Callable[..., fe.Store]) -> None:
    store = open_pg()
    await store.create(make_flow(1))
    with pytest.raises(fe.StoreError) as caught:
        await asyncio.to_thread(asyncio.run, store.get("flow-1"))
    assert "another event loop" in caught.value.message
    with pytest.raises(fe.StoreError, match="closed in the event loop that opened it"):
        await asyncio.to_thread(asyncio.run, store.aclose())
    await store.aclose()
    assert await asyncio.to_thread(asyncio.run, _get_and_close(store, "flow-1")) == make_flow(1)


async def _get_and_close(store: fe.Store, flow_id: str) -> fe.Flow | None:
    try:
        return await store.get(flow_id)
    finally:
        await store.aclose()


def test_a_store_outlives_the_loops_of_sync_callers(url: str) -> None:
    """``asyncio.run`` per call, as a script would: each new loop gets a new pool."""
    store = plugins.open_store(url)
    asyncio.run(store.create(make_flow(1)))
    assert asyncio.run(store.get("flow-1")) == make_flow(1)
    asyncio.run(store.aclose())
