"""What only the SQLite store does: its URL, its file, its schema, and several processes on one file.

The shared suites (test_conformance.py, test_guarantees.py) hold it to the Store
contract; these tests hold it to the rest of its design (SECURITY.md 15, 20, 21).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import attrs
import flowengine as fe
import pytest
from flowengine import _plugins as plugins
from flowengine import digest
from flowengine._codec import KEY_ENV, new_store_key

from flowengine_sqlite import SQLiteStore, default_url, flowengine_store
from flowengine_sqlite._schema import SCHEMA_VERSION
from flowengine_sqlite._schema import immediate as real_immediate
from flowengine_sqlite._url import parse_url
from tests.stores.backend_sqlite import BACKEND, db_path
from tests.stores.test_conformance import make_flow, make_token
from tests.support.clock import FakeClock

ROOT = Path(__file__).resolve().parents[2]


def siblings(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = BACKEND.new_url(tmp_path)
    yield url
    BACKEND.cleanup(url)


@pytest.fixture
async def store(url: str) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore.from_url(url)
    yield store
    await store.aclose()


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0: whatever is not created private on purpose ends up world-readable."""
    old = os.umask(0)
    yield
    os.umask(old)


# -- the URL ------------------------------------------------------------------------------------


def test_url_path_is_everything_after_the_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_url("sqlite:///var/lib/fe.db").path == Path("/var/lib/fe.db")
    monkeypatch.chdir(tmp_path)
    assert parse_url("sqlite://rel/fe.db").path == tmp_path / "rel" / "fe.db"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert parse_url("sqlite://~/fe.db").path == tmp_path / "home" / "fe.db"


def test_url_options() -> None:
    target = parse_url("sqlite:///x/fe.db")
    assert (target.timeout, target.options) == (5.0, {})
    target = parse_url("sqlite:///x/fe.db?key_file=/keys/fe.key&timeout=0.5")
    assert (target.path, target.timeout, target.options) == (
        Path("/x/fe.db"),
        0.5,
        {"key_file": "/keys/fe.key"},
    )


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("sqlite://", "has no path"),
        ("sqlite://?timeout=1", "has no path"),
        ("sqlite:/x/fe.db", "must start with 'sqlite://'"),
        ("sqlite:///x/", "names a folder"),
        ("sqlite://:memory:", "memory://"),
        ("sqlite:///x/a\x00b.db", "NUL"),
        ("sqlite:///x/fe.db?keyfile=/secret/k", "unknown option 'keyfile'"),
        ("sqlite:///x/fe.db?timeout=1&timeout=2", "option 'timeout' twice"),
        ("sqlite:///x/fe.db?key_file=", "empty key_file"),
        ("sqlite:///x/fe.db?timeout=soon", "timeout"),
        ("sqlite:///x/fe.db?timeout=-1", "timeout"),
        ("sqlite:///x/fe.db?timeout=nan", "timeout"),
        ("sqlite:///x/fe.db?timeout=inf", "timeout"),
    ],
)
def test_bad_urls_are_config_errors(url: str, complaint: str) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        plugins.open_store(url)
    assert caught.value.code == "store_url_invalid"
    assert complaint in caught.value.message
    assert "/secret/k" not in caught.value.message  # the query is never repeated back


def test_the_hook_answers_only_sqlite_urls(tmp_path: Path) -> None:
    assert flowengine_store("memory://") is None
    assert flowengine_store("sqlite3:///x.db") is None
    assert flowengine_store("postgresql://localhost/test") is None
    assert isinstance(plugins.open_store(f"sqlite://{tmp_path}/fe.db"), SQLiteStore)


def test_a_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        plugins.open_store(f"sqlite://{tmp_path}/fe.db?key_file={tmp_path}/nope.key")
    assert caught.value.code == "store_key_invalid"


def test_default_url_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_url() == f"sqlite://{tmp_path}/data/flowengine/flowengine.db"
    assert parse_url(default_url()).path == tmp_path / "data" / "flowengine" / "flowengine.db"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ("", "relative/data"):  # the XDG spec: relative values are ignored
        monkeypatch.setenv("XDG_DATA_HOME", unset)
        assert default_url() == f"sqlite://{tmp_path}/home/.local/share/flowengine/flowengine.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_url().startswith("sqlite:///")


# -- the file -----------------------------------------------------------------------------------


async def test_opening_is_lazy_and_closing_is_final(url: str) -> None:
    store = plugins.open_store(url)
    assert not db_path(url).exists()  # open_store in sync code touches nothing
    assert await store.get("flow-1") is None
    assert db_path(url).exists()
    await store.aclose()
    await store.aclose()  # twice is fine
    with pytest.raises(fe.StoreError) as caught:
        await store.get("flow-1")
    assert (caught.value.code, caught.value.retryable) == ("store_unavailable", False)
    assert "closed" in caught.value.message


async def test_calls_already_made_finish_before_aclose_closes(url: str) -> None:
    store = plugins.open_store(url)
    pending = [asyncio.ensure_future(store.create(make_flow(n))) for n in range(5)]
    await asyncio.sleep(0)  # one turn of the loop: each call is queued on the worker
    await store.aclose()
    await asyncio.gather(*pending)
    again = plugins.open_store(url)
    assert len(await again.list_flows()) == 5
    await again.aclose()


async def test_sec15_file_and_wal_siblings_are_0600_and_new_folders_0700(
    tmp_path: Path, open_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "new" / "deeper" / "fe.db"
    store = plugins.open_store(f"sqlite://{path}")
    await store.put_token(make_token(1))
    for file in siblings(path):  # -wal and -shm exist while the store is open
        assert mode(file) == 0o600, file
    assert mode(path.parent) == mode(path.parent.parent) == 0o700
    assert mode(tmp_path) == 0o755  # folders that existed are not touched
    assert caplog.records == []  # SQLite made the siblings 0600 itself: nothing needed fixing
    await store.aclose()


async def test_sec15_a_loose_existing_store_is_made_private(
    tmp_path: Path, open_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fe.db"
    for file in siblings(path):
        file.touch(mode=0o644)
    store = plugins.open_store(f"sqlite://{path}")
    with caplog.at_level(logging.WARNING, logger="flowengine.store"):
        await store.put_token(make_token(1))
    assert [mode(file) for file in siblings(path)] == [0o600, 0o600, 0o600]
    assert "made" in caplog.text and "private" in caplog.text
    await store.aclose()


async def test_wal_mode_normal_sync_busy_timeout_and_schema_version(tmp_path: Path) -> None:
    store = SQLiteStore.from_url(f"sqlite://{tmp_path}/fe.db?timeout=2.5")
    pragmas = await store._worker.run(
        lambda conn: [
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout", "user_version", "secure_delete")
        ]
    )
    assert pragmas == ["wal", 1, 2500, SCHEMA_VERSION, 1]
    await store.aclose()


async def test_a_database_from_a_newer_flowengine_is_refused(url: str) -> None:
    conn = sqlite3.connect(db_path(url))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    store = plugins.open_store(url)
    with pytest.raises(fe.StoreError) as caught:
        await store.get("flow-1")
    assert (caught.value.code, caught.value.retryable) == ("store_unavailable", False)
    assert "999" in caught.value.message and "upgrade" in caught.value.message
    await store.aclose()


async def test_two_stores_opening_a_new_file_at_once_both_work(url: str) -> None:
    stores = [plugins.open_store(url) for _ in range(4)]
    await asyncio.gather(*(s.create(make_flow(n)) for n, s in enumerate(stores)))
    assert len(await stores[0].list_flows()) == 4
    for s in stores:
        await s.aclose()


# -- failures -----------------------------------------------------------------------------------


async def test_sec20_an_unusable_path_is_store_unavailable_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    path = tmp_path / "a-file" / "fe.db"
    store = plugins.open_store(f"sqlite://{path}")
    calls = [
        store.get("flow-1"),
        store.create(make_flow(1)),
        store.list_tokens(),
        store.acquire("lease", 1),
        store.purge(0.0),
    ]
    for call in calls:
        with pytest.raises(fe.StoreError) as caught:
            await call
        assert (caught.value.code, caught.value.retryable) == ("store_unavailable", True)
        assert "SQLite" in caught.value.message and str(path) in caught.value.message
    await store.aclose()


async def test_a_file_that_is_not_a_database_is_store_corrupt(url: str) -> None:
    db_path(url).write_bytes(b"this is not an SQLite database, not even a little" * 100)
    store = plugins.open_store(url)
    with pytest.raises(fe.StoreError) as caught:
        await store.get("flow-1")
    assert (caught.value.code, caught.value.retryable) == ("store_corrupt", False)
    assert str(db_path(url)) in caught.value.message
    await store.aclose()


async def test_a_writer_holding_the_lock_past_the_timeout_is_store_unavailable(url: str) -> None:
    store = plugins.open_store(url + "?timeout=0.05")
    await store.create(make_flow(1))
    other = sqlite3.connect(db_path(url), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(fe.StoreError) as caught:
            await store.create(make_flow(2))
        assert (caught.value.code, caught.value.retryable) == ("store_unavailable", True)
        assert "locked" in caught.value.message
        assert await store.get("flow-1") is not None  # WAL: readers never wait for the writer
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.create(make_flow(2))
    await store.aclose()


async def test_waiting_for_the_lock_does_not_block_the_event_loop(url: str) -> None:
    store = plugins.open_store(url + "?timeout=10")
    await store.create(make_flow(0))
    other = sqlite3.connect(db_path(url), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    pending = asyncio.ensure_future(store.create(make_flow(1)))
    for _ in range(20):  # the loop keeps turning while the store waits for the lock
        await asyncio.to_thread(lambda: None)
    assert not pending.done()
    other.execute("ROLLBACK")
    other.close()
    await pending
    assert [f.id for f in await store.list_flows()] == ["flow-0", "flow-1"]
    await store.aclose()


async def test_a_cancelled_acquire_gives_the_lease_back(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = plugins.open_store(url + "?timeout=10")
    await store.get("warm-up")
    waiting = threading.Event()

    def immediate(conn: sqlite3.Connection) -> AbstractContextManager[None]:
        waiting.set()  # the worker is about to wait for the write lock
        return real_immediate(conn)

    monkeypatch.setattr("flowengine_sqlite._store.immediate", immediate)
    other = sqlite3.connect(db_path(url), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    task = asyncio.ensure_future(store.acquire("refresh:x", 30))
    assert await asyncio.to_thread(waiting.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    other.execute("ROLLBACK")  # now the worker takes the lease nobody is waiting for
    other.close()
    assert await store.acquire("refresh:x", 30) is not None  # it was given back, not left for 30 s
    await store.aclose()


async def test_a_store_used_before_a_fork_works_in_the_child(store: SQLiteStore) -> None:
    await store.create(make_flow(1))  # the parent's worker thread and connection now exist
    pid = os.fork()
    if pid == 0:  # the child: a hang would be the old worker thread, which did not come along
        code = 1
        try:
            signal.alarm(10)
            asyncio.run(store.create(make_flow(2)))
            code = 0 if asyncio.run(store.get("flow-2")) == make_flow(2) else 2
        finally:
            os._exit(code)  # whatever happened, never return into pytest
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [f.id for f in await store.list_flows()] == ["flow-1", "flow-2"]  # the parent still works


def test_a_process_that_never_closes_its_store_exits_and_keeps_what_it_wrote(url: str) -> None:
    """The worker thread neither holds the interpreter open nor loses a call made before exit."""
    script = (
        "import asyncio, sys\n"
        "from flowengine import _plugins as plugins\n"
        "from tests.stores.test_conformance import make_flow\n"
        "store = plugins.open_store(sys.argv[1])\n"
        "asyncio.run(store.create(make_flow(7)))\n"  # no aclose(): the process just ends
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url], cwd=Path(__file__).parents[2], timeout=60, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    store = plugins.open_store(url)
    try:
        assert asyncio.run(store.get("flow-7")) == make_flow(7)
    finally:
        asyncio.run(store.aclose())


async def test_a_thread_that_cannot_start_is_a_typed_error_and_the_next_call_starts_one(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = plugins.open_store(url)
    real_start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        monkeypatch.setattr(threading.Thread, "start", real_start)  # the next one starts
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(fe.StoreError) as caught:
        await store.create(make_flow(1))
    assert caught.value.code == "store_unavailable" and "cannot start its thread" in caught.value.message
    await store.create(make_flow(1))  # nothing was queued for a thread that never ran
    assert await store.get("flow-1") == make_flow(1)
    await store.aclose()


def test_a_store_dropped_without_aclose_ends_its_thread(url: str) -> None:
    before = set(threading.enumerate())
    store = plugins.open_store(url)
    asyncio.run(store.create(make_flow(1)))
    [thread] = [t for t in set(threading.enumerate()) - before if t.name == "flowengine-sqlite"]
    del store
    gc.collect()
    thread.join(timeout=30)  # an upper bound, not a window: the stop signal is sent on collection
    assert not thread.is_alive()


def test_a_close_given_up_on_still_runs_before_the_process_exits(url: str) -> None:
    """``aclose()`` cancelled while the worker waits on another writer's lock: at exit the close
    still runs after the calls queued before it, so the connection is closed and its WAL emptied."""
    path = db_path(url)
    script = (
        "import asyncio, atexit, sqlite3, sys\n"
        "from flowengine import _plugins as plugins\n"
        "from tests.stores.test_conformance import make_flow\n"
        "store = plugins.open_store(sys.argv[1] + '?timeout=60')\n"
        "asyncio.run(store.create(make_flow(1)))\n"
        "holder = sqlite3.connect(sys.argv[2], isolation_level=None)\n"
        "holder.execute('BEGIN IMMEDIATE')  # the store's next write waits for this lock\n"
        "def release():  # runs before the store's own exit hook (registered first, runs last)\n"
        "    holder.execute('COMMIT')\n"
        "    holder.close()\n"
        "atexit.register(release)\n"
        "async def main():\n"
        "    write = asyncio.ensure_future(store.create(make_flow(2)))\n"
        "    closing = asyncio.ensure_future(store.aclose())\n"
        "    await asyncio.sleep(0)\n"
        "    write.cancel(); closing.cancel()  # both given up on\n"
        "    await asyncio.gather(write, closing, return_exceptions=True)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url, str(path)],
        cwd=Path(__file__).parents[2],
        timeout=120,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert not path.with_name(path.name + "-wal").exists()  # closed: SQLite emptied and removed it
    store = plugins.open_store(url)
    try:
        assert "flow-1" in [f.id for f in asyncio.run(store.list_flows())]  # flow-2 ran or was skipped
    finally:
        asyncio.run(store.aclose())


def test_one_store_serves_several_event_loops(url: str) -> None:
    store = plugins.open_store(url)
    asyncio.run(store.create(make_flow(1)))
    assert asyncio.run(store.get("flow-1")) == make_flow(1)
    asyncio.run(store.aclose())


# -- records ------------------------------------------------------------------------------------


async def test_a_record_under_another_rows_columns_is_corrupt(
    url: str, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.create(make_flow(1))
    await store.create(make_flow(2))
    conn = sqlite3.connect(db_path(url), isolation_level=None)
    conn.execute(
        "UPDATE flows SET record = (SELECT record FROM flows WHERE id = 'flow-1') WHERE id = 'flow-2'"
    )
    conn.close()
    with pytest.raises(fe.StoreError) as caught:
        await store.get_by_state(digest("state-2"))
    assert caught.value.code == "store_corrupt" and "flow-2" in caught.value.message
    with caplog.at_level(logging.WARNING, logger="flowengine.store"):
        assert [f.id for f in await store.list_flows()] == ["flow-1"]
    assert "flow-2" in caplog.text


async def test_listings_filter_in_sql_and_skip_damaged_records_with_a_warning(
    url: str, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.create(make_flow(1, spec="podio"))
    await store.create(make_flow(2, spec="other"))
    await store.put_token(make_token(1, expires_at=100.0))
    await store.put_token(make_token(2, provider="other", expires_at=100.0))
    await store.put_token(make_token(3, expires_at=9_000.0))
    BACKEND.corrupt_flow(url, "flow-2")
    BACKEND.corrupt_token(url, make_token(2, provider="other").key)
    BACKEND.corrupt_token(url, make_token(3).key)
    with caplog.at_level(logging.WARNING, logger="flowengine.store"):
        # The filters leave the damaged records out before anything is decoded: no warning.
        assert [f.id for f in await store.list_flows(spec="podio")] == ["flow-1"]
        assert [t.key for t in await store.list_tokens(provider="podio", expiring_before=200.0)] == [
            make_token(1).key
        ]
        assert caplog.records == []
        assert [f.id for f in await store.list_flows()] == ["flow-1"]
    assert len(caplog.records) == 1 and "flow-2" in caplog.text


async def test_compare_and_set_onto_another_flows_state_is_a_conflict(store: SQLiteStore) -> None:
    await store.create(make_flow(1))
    await store.create(make_flow(2))
    with pytest.raises(fe.StoreError) as caught:
        await store.compare_and_set(attrs.evolve(make_flow(2), state_hash=digest("state-1"), version=2), 1)
    assert caught.value.code == "store_conflict"
    assert await store.get("flow-2") == make_flow(2)


async def test_keyed_by_key_file_and_unreadable_without_it(url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "fe.key"
    key_file.write_text(new_store_key())
    keyed = plugins.open_store(f"{url}?key_file={key_file}")
    assert isinstance(keyed, SQLiteStore) and keyed.sealed
    await keyed.put_token(make_token(1))
    await keyed.aclose()
    assert b"access-1" not in BACKEND.raw_dump(url)
    bare = plugins.open_store(url)
    with pytest.raises(fe.StoreError) as caught:
        await bare.get_token(make_token(1).key)
    assert caught.value.code == "store_key_missing"
    with pytest.raises(fe.StoreError) as listing:  # a missing key is not one damaged record to skip
        await bare.list_tokens()
    assert listing.value.code == "store_key_missing"
    await bare.aclose()


async def test_replaced_and_deleted_secrets_leave_no_trace_in_the_file(url: str, store: SQLiteStore) -> None:
    await store.put_token(make_token(1))
    await store.put_token(attrs.evolve(make_token(1), access_token="access-rotated"))
    await store.put_token(make_token(2))
    await store.delete_token(make_token(2).key)
    raw = BACKEND.raw_dump(url)
    assert b"access-rotated" in raw
    assert b"access-1" not in raw and b"access-2" not in raw  # secure_delete zeroes freed space


async def test_purge_also_clears_leases_that_ran_out(url: str) -> None:
    clock = FakeClock()
    store = SQLiteStore.from_url(url, clock=clock.now)
    await store.acquire("gone", 10)
    clock.advance(11)  # its holder died 11 s ago
    await store.acquire("held", 30)
    await store.purge(0.0)
    await store.aclose()
    conn = sqlite3.connect(db_path(url))
    assert conn.execute("SELECT key FROM leases").fetchall() == [("held",)]
    conn.close()


# -- several stores, several processes ----------------------------------------------------------


async def test_two_store_objects_racing_compare_and_set_have_one_winner(url: str) -> None:
    one, two = plugins.open_store(url), plugins.open_store(url)
    flow = make_flow(1)
    await one.create(flow)
    moves = [(s, attrs.evolve(flow, state=f"s{i}", version=2)) for i in range(10) for s in (one, two)]
    results = await asyncio.gather(*(s.compare_and_set(m, 1) for s, m in moves))
    assert results.count(True) == 1
    assert await two.get(flow.id) == moves[results.index(True)][1]
    await one.aclose()
    await two.aclose()


RACER = """
import asyncio, json, sys
import attrs
from flowengine import _plugins as plugins

async def cas(store, name, rounds):
    # Everyone bumps one flow's version a fixed number of times: each version must be won once.
    won, lost = [], 0
    while len(won) < rounds:
        flow = await store.get("flow-1")
        moved = attrs.evolve(flow, state=name, version=flow.version + 1)
        if await store.compare_and_set(moved, flow.version):
            won.append(moved.version)
        else:
            lost += 1
    return {"won": won, "lost": lost}

async def mutex(store, name, rounds):
    # A read-modify-write under the lease: were the lease not exclusive, increments would be lost.
    won, lost = 0, 0
    while won < rounds:
        lease = await store.acquire("mutex", 30)
        if lease is None:
            lost += 1
            continue
        token = await store.get_token("podio:user:1")
        await store.put_token(attrs.evolve(token, extra={"count": token.extra["count"] + 1}))
        await store.release(lease)
        won += 1
    return {"won": won, "lost": lost}

async def hold(store, name, ttl):
    # Take a lease and exit without releasing it, as a crashed worker would.
    lease = await store.acquire("held", ttl)
    return {"expires_at": lease.expires_at if lease else None}

async def main(url, what, name, arg):
    store = plugins.open_store(url)
    await store.get("flow-1")  # connected before the start
    print("ready", flush=True)
    sys.stdin.readline()
    result = await {"cas": cas, "mutex": mutex, "hold": hold}[what](store, name, int(arg))
    print(json.dumps(result), flush=True)
    await store.aclose()

asyncio.run(main(*sys.argv[1:]))
"""


async def race(url: str, what: str, arg: float, processes: int = 2) -> list[dict[str, Any]]:
    """Start ``processes`` racers, let each connect, then start them together; what each reports."""
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RACER,
            url,
            what,
            f"p{n}",
            str(arg),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(processes)
    ]
    for racer in racers:
        assert racer.stdout is not None
        if await asyncio.wait_for(racer.stdout.readline(), 30) != b"ready\n":
            _, err = await racer.communicate()
            pytest.fail(f"a racer died before the start: {err.decode()}")
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write(b"go\n")
    outputs = [await asyncio.wait_for(racer.communicate(), 30) for racer in racers]
    for racer, (_out, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err.decode()
    return [json.loads(out) for out, _err in outputs]


# The races below are counted in rounds, never timed: how far the racers overlap depends on the
# machine's load, so no assertion may depend on it; what they claim holds however they interleave.


@pytest.mark.slow
async def test_two_processes_racing_compare_and_set_on_one_flow_have_exactly_one_winner(
    url: str, store: SQLiteStore
) -> None:
    await store.create(make_flow(1))
    first, second = await race(url, "cas", 150)
    assert not set(first["won"]) & set(second["won"])  # no version was won twice
    final = await store.get("flow-1")
    assert final is not None and final.version == 1 + 300
    assert sorted(first["won"] + second["won"]) == list(range(2, final.version + 1))  # no update lost


@pytest.mark.slow
async def test_leases_are_exclusive_across_processes(url: str, store: SQLiteStore) -> None:
    await store.put_token(attrs.evolve(make_token(1), extra={"count": 0}))
    first, second = await race(url, "mutex", 150)
    token = await store.get_token(make_token(1).key)
    assert token is not None and token.extra["count"] == first["won"] + second["won"] == 300


@pytest.mark.slow
async def test_a_lease_outlives_its_process_until_it_expires(url: str, store: SQLiteStore) -> None:
    before = time.time()
    (held,) = await race(url, "hold", 30, processes=1)
    assert before + 30 <= held["expires_at"] <= time.time() + 30  # taken by the other process's clock
    assert await store.acquire("held", 30) is None  # its holder exited without releasing it
    await store.purge(0.0)
    assert await store.acquire("held", 30) is None  # live leases survive a purge
    # Expiry is wall-clock time, which every process on the host shares: a process whose
    # clock reads 31 s later sees the lease run out, with nobody waiting for it.
    later = SQLiteStore.from_url(url, clock=lambda: time.time() + 31)
    try:
        assert await later.acquire("held", 30) is not None
    finally:
        await later.aclose()


async def test_sec21_a_writer_killed_mid_transaction_leaves_nothing_half_written(
    url: str, store: SQLiteStore
) -> None:
    await store.create(make_flow(1))
    killer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, sys, time\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "conn.execute(\"UPDATE flows SET state = 'half', record = x'00' WHERE id = 'flow-1'\")\n"
        "print('written', flush=True)\n"
        "time.sleep(60)\n",
        str(db_path(url)),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert killer.stdout is not None
        assert await asyncio.wait_for(killer.stdout.readline(), 30) == b"written\n"
    finally:
        killer.send_signal(signal.SIGKILL)
        await killer.wait()
    assert await store.get("flow-1") == make_flow(1)
    assert await store.compare_and_set(attrs.evolve(make_flow(1), version=2, state="authorized"), 1)


async def test_a_database_of_the_first_version_is_counted_once_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flows are counted by their clear columns at once; tokens, sealed, on the first token count."""
    from flowengine import codec_for

    from flowengine_sqlite._schema import MIGRATIONS

    monkeypatch.setenv(KEY_ENV, new_store_key())
    path = tmp_path / "old.db"
    codec = codec_for({})
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    for n, state in enumerate(("redirected", "redirected", "exchanged")):
        flow = make_flow(n, state=state)
        conn.execute(
            "INSERT INTO flows (id, spec, state, state_hash, version, created_at, expires_at, record)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (flow.id, flow.spec, flow.state, flow.state_hash, flow.version, flow.created_at, flow.expires_at,
             codec.dump_flow(flow)),
        )  # fmt: skip
    tokens = [make_token(1, expires_at=500.0), attrs.evolve(make_token(2), dead=True, dead_at=900.0)]
    for token in tokens:
        conn.execute(
            "INSERT INTO tokens (key, provider, expires_at, record) VALUES (?, ?, ?, ?)",
            (token.key, token.provider, token.expires_at, codec.dump_token(token)),
        )
    conn.close()

    store = plugins.open_store(f"sqlite://{path}")
    try:
        counts = await store.flow_counts(since=0)
        assert {(c.state, c.count) for c in counts.states} == {("redirected", 2), ("exchanged", 1)}
        assert counts.steps == ()  # what happened before the upgrade was never counted
        health = await store.token_counts(now=1_000.0, within=60)
        assert {(c.health.value, c.count) for c in health.counts} == {("refreshable", 1), ("dead", 1)}
        assert [t.key for t in health.tokens] == [tokens[1].key, tokens[0].key]
        await store.put_token(attrs.evolve(tokens[0], expires_at=5_000.0))  # counted as it is written now
        again = await store.token_counts(now=1_000.0, within=60)
        assert {(c.health.value, c.count) for c in again.counts} == {("fresh", 1), ("dead", 1)}
    finally:
        await store.aclose()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM tokens WHERE dead IS NULL").fetchone() == (0,)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
