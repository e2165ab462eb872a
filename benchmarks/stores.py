"""Store benchmark: compare-and-set transitions per second and latency, per backend.

A "transition" is what the engine does for every step of a flow: read the flow,
then ``compare_and_set`` its next version. Each task works on its own flows, so
the figures measure the store, not contention on one row (the guarantees suite
covers contention). Run: ``python -m benchmarks.stores [--quick] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import attrs
import flowengine as fe
from flowengine import _plugins as plugins
from flowengine import digest


def _flow(n: int, run: str) -> fe.Flow:
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
    )


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


async def measure_cas(url: str, *, concurrency: int, transitions: int) -> dict[str, float]:
    """Transitions per second, p50 and p99 latency (ms) at ``concurrency`` tasks."""
    store = plugins.open_store(url)
    run = uuid.uuid4().hex[:8]
    per_task = max(1, transitions // concurrency)
    flows = [_flow(n, run) for n in range(concurrency)]
    for flow in flows:
        await store.create(flow)
    latencies: list[float] = []

    async def worker(flow: fe.Flow) -> None:
        for _ in range(per_task):
            began = time.perf_counter()
            current = await store.get(flow.id)
            assert current is not None
            moved = attrs.evolve(current, version=current.version + 1)
            assert await store.compare_and_set(moved, current.version)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker(flow) for flow in flows))
    elapsed = time.perf_counter() - began
    await store.aclose()
    latencies.sort()
    return {
        "transitions_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


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
    """Every store at concurrency 1 and 32, and memory per pending flow."""
    import tempfile

    transitions = 300 if quick else 3000
    results: dict[str, Any] = {"cas": {}, "memory": memory_per_pending_flow(10_000 if quick else 100_000)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in store_urls(Path(tmp)).items():
            if not available(name):
                results["cas"][name] = {"skipped": "service not reachable"}
                continue
            try:
                results["cas"][name] = {
                    f"c{c}": asyncio.run(measure_cas(url, concurrency=c, transitions=transitions))
                    for c in (1, 32)
                }
            except fe.PluginError as exc:
                results["cas"][name] = {"skipped": str(exc)}
            finally:
                asyncio.run(_cleanup(name, url))
    return results


def print_table(results: dict[str, Any]) -> None:
    """The results as the Markdown table docs/performance.md holds."""
    print("| store | concurrency | transitions/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, by_concurrency in results["cas"].items():
        if "skipped" in by_concurrency:
            print(f"| {name} | - | skipped: {by_concurrency['skipped']} | | |")
            continue
        for label, row in by_concurrency.items():
            print(
                f"| {name} | {label[1:]} | {row['transitions_per_s']:,.0f} | "
                f"{row['p50_ms']:.3f} | {row['p99_ms']:.3f} |"
            )
    memory = results["memory"]
    print(
        f"\nmemory store: {memory['bytes_per_flow']:,.0f} B per pending flow "
        f"(plain dict of the same fields: {memory['plain_dict_bytes_per_flow']:,.0f} B)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer transitions: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = run(args.quick)
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
