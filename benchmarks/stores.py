"""Store benchmark: compare-and-set writes per second per backend, beside its own driver's floor.

Every step of a flow ends in ``compare_and_set`` of its next version. For each
backend, in the same run and interleaved round by round (the order rotated):

- ``compare_and_set``: the store's write of a flow's next version (the flows
  built before the clock starts, each with the one new history entry an
  engine step adds, which the store's counts read), the figure the target
  is about;
- ``get + compare_and_set``: the whole transition as the engine does it (a
  read, then the write), for reference;
- the floor: the backend's own driver doing the write with no store around it
  (benchmarks/_store_floor.py says exactly what: one ``UPDATE`` for SQLite
  and PostgreSQL, a ``GET`` and a ``SET`` for Redis), on rows of the same table.

Target: the store's compare-and-set at concurrency 1 at least 0.7x its floor
(for SQLite, the floor on its own worker thread as the store's; the inline
floor, which blocks the event loop, is shown beside). Concurrency 32 is
reported without a target. The memory store has no driver and no floor.
Each task works on its own flows, so the figures measure the store, not
contention on one row (the guarantees suite covers contention).
Run: ``python -m benchmarks.stores [--quick]``.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import flowengine as fe
from flowengine import _plugins as plugins
from flowengine import digest

from benchmarks._common import Row, ratio_of, run_alone, stat
from benchmarks._store_floor import Floor, floors_for

#: The store's compare-and-set over its floor at concurrency 1.
TARGET = 0.7


def _flow(n: int, run: str) -> fe.Flow:
    """A pending flow as the engine stores it: its newest history entry is the step that led to its state."""
    now = time.time()
    return fe.Flow(
        id=f"{run}-{n}",
        spec="podio",
        state="redirected",
        created_at=now,
        expires_at=now + 600,
        client_id="bench-client",
        redirect_uri="https://app.example.com/callback",
        state_hash=digest(f"{run}-{n}"),
        history=(fe.HistoryEntry(now, "start", "new", "redirected"),),
    )


def _next(flow: fe.Flow, versions: int = 1) -> fe.Flow:
    """``flow`` ``versions`` writes later, as the engine writes a step: one new history entry.

    The entry is a step from the flow's state to itself (``redirected``), so
    every write moves no flow between states but counts a step, and the
    record keeps its size however many rounds run.
    """
    step = fe.HistoryEntry(time.time(), "bench", flow.state, flow.state)
    return attrs.evolve(flow, version=flow.version + versions, history=(step,))


def store_urls(tmp: Path) -> dict[str, str]:
    """One fresh URL per backend; the service-backed ones are isolated by prefix/schema."""
    run = uuid.uuid4().hex[:12]
    return {
        "memory": "memory://",
        "sqlite": f"sqlite://{tmp}/bench-{run}.db",
        "redis": f"redis://127.0.0.1:6379/0?prefix=fe-bench-{run}:",
        "postgres": f"postgresql://postgres@127.0.0.1:5432/test?schema=fe_bench_{run}",
    }


async def _cleanup(name: str, url: str) -> None:
    if name == "redis":
        import redis.asyncio as redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        prefix = url.split("prefix=", 1)[1]
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    elif name == "postgres":
        import psycopg

        schema = url.split("schema=", 1)[1]
        async with await psycopg.AsyncConnection.connect("postgresql://postgres@127.0.0.1:5432/test") as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.commit()


CAS = "flowengine store: compare_and_set"
TRANSITION = "flowengine store: get + compare_and_set"
Side = Callable[[int, int], Awaitable[float]]


async def _store_sides(store: Any, run: str, concurrency: int) -> dict[str, Side]:
    """The store's two sides: ``side(task, n)`` does ``n`` steps on its task's own flow; its seconds."""
    flows: dict[str, list[fe.Flow]] = {}
    for side in (CAS, TRANSITION):
        flows[side] = [_flow(n, f"{run}-{len(flows)}") for n in range(concurrency)]
        for flow in flows[side]:
            await store.create(flow)

    async def cas(task: int, n: int) -> float:
        current = flows[CAS][task]
        moves = [_next(current, i) for i in range(1, n + 1)]
        began = time.perf_counter()
        for moved in moves:
            assert await store.compare_and_set(moved, moved.version - 1)
        flows[CAS][task] = moves[-1]
        return time.perf_counter() - began

    async def transition(task: int, n: int) -> float:
        flow_id = flows[TRANSITION][task].id
        began = time.perf_counter()
        for _ in range(n):
            current = await store.get(flow_id)
            assert current is not None
            assert await store.compare_and_set(_next(current), current.version)
        return time.perf_counter() - began

    return {CAS: cas, TRANSITION: transition}


async def _floor_side(store: Any, floor: Floor, run: str, concurrency: int) -> Side:
    """A floor on rows of its own, created through the store (same table, same triggers)."""
    flows = [_flow(n, f"{run}-floor-{id(floor)}") for n in range(concurrency)]
    for flow in flows:
        await store.create(flow)
    await floor.open([flow.id for flow in flows])

    async def side(task: int, n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            await floor.step(task)
        return time.perf_counter() - began

    return side


def _level(backend: str, url: str) -> None:
    """Start the next side's round from the same place: for SQLite, an empty WAL.

    SQLite checkpoints the WAL by itself once it holds 1,000 pages, in whichever
    connection's commit crosses that line; without this, that cost fell on the
    store in one round and on the floor in the next (per-round ratios from 0.33x to
    1.73x in one run of 500 writes a round). From an empty WAL both sides write the
    same pages per step and cross the line at the same step.
    """
    if backend == "sqlite":
        import sqlite3

        from flowengine_sqlite._url import parse_url

        conn = sqlite3.connect(parse_url(url).path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()


async def measure_backend(
    backend: str, url: str, *, concurrency: int, steps: int, rounds: int
) -> dict[str, list[float]]:
    """Steps per second of every side, round by round, the sides' order rotated each round."""
    store = plugins.open_store(url)
    run = uuid.uuid4().hex[:8]
    floors = floors_for(backend, url)
    try:
        sides = await _store_sides(store, run, concurrency)
        for floor in floors:
            sides[floor.name] = await _floor_side(store, floor, run, concurrency)
        per_task = max(1, steps // concurrency)
        names = list(sides)
        figures: dict[str, list[float]] = {name: [] for name in names}
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                _level(backend, url)
                began = time.perf_counter()
                await asyncio.gather(*(sides[name](task, per_task) for task in range(concurrency)))
                figures[name].append(per_task * concurrency / (time.perf_counter() - began))
        return figures
    finally:
        for floor in floors:
            await floor.aclose()
        await store.aclose()


def backend_rows(backend: str, concurrency: int, figures: dict[str, list[float]]) -> list[Row]:
    """A row per side, then the store's compare-and-set over each floor (the first one with the target)."""
    bench = f"stores {backend} c{concurrency}"
    rows = [Row(bench, f"{name}: per s", stat(values), "/s") for name, values in figures.items()]
    for index, floor in enumerate(name for name in figures if name not in (CAS, TRANSITION)):
        limit = TARGET if concurrency == 1 and index == 0 else None
        rows.append(ratio_of(bench, figures, CAS, floor, limit))
    return rows


def memory_per_pending_flow(count: int) -> dict[str, float]:
    """Bytes per pending flow in the memory store (tracemalloc), beside a plain dict of the same fields."""
    from flowengine_memory import MemoryStore

    async def fill(store: MemoryStore) -> None:
        for n in range(count):
            await store.create(_flow(n, "mem"))

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = MemoryStore()
    asyncio.run(fill(kept))
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    kept = MemoryStore()  # let the filled one go before measuring the baseline
    gc.collect()
    tracemalloc.start()
    plain: dict[str, dict[str, Any]] = {}
    base = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        flow = _flow(n, "mem")
        plain[flow.state_hash] = attrs.asdict(flow, recurse=False)
    plain_used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"bytes_per_flow": used / count, "plain_dict_bytes_per_flow": plain_used / count}


def available(name: str) -> bool:
    """True when the backend's service answers (memory and sqlite always do)."""
    import socket

    port = {"redis": 6379, "postgres": 5432}.get(name)
    if port is None:
        return True
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def run(quick: bool) -> dict[str, Any]:
    """Every store at concurrency 1 (the target) and 32 beside its driver's floor; memory per flow."""
    import tempfile

    steps, rounds = (60, 3) if quick else (500, 7)
    results: dict[str, Any] = {"steps_per_round": steps, "rounds": rounds, "per_second": {}}
    results["memory"] = memory_per_pending_flow(10_000 if quick else 100_000)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in store_urls(Path(tmp)).items():
            if not available(name):
                results["per_second"][name] = {"skipped": "service not reachable"}
                rows.append(Row(f"stores {name}", "skipped: service not reachable", stat([0.0]), ""))
                continue
            try:
                for c in (1, 32):
                    figures = asyncio.run(
                        measure_backend(
                            name, url, concurrency=c, steps=steps * (1 if c == 1 else 4), rounds=rounds
                        )
                    )
                    results["per_second"].setdefault(name, {})[f"c{c}"] = figures
                    rows += backend_rows(name, c, figures)
            finally:
                asyncio.run(_cleanup(name, url))
    results["rows"] = rows
    return results


if __name__ == "__main__":
    run_alone(run, __doc__)
