"""The operator's view at scale: a status read with 1M flows and 100k tokens, and what counting costs writes.

For each durable store (SQLite, Redis, PostgreSQL; memory counts tokens by
reading them all and is not measured), in a fresh file, key prefix or schema:

1. fill 1% of the flows and tokens, and time a status read (``flow_counts`` and
   ``token_counts``, each the median of 15 rounds);
2. fill the rest (by default 1,000,000 flows: each created with its ``start``,
   half of them moved on to a final state, transitions spread over the last 24 h;
   and 100,000 tokens: 80% fresh, 10% expiring within 2 h, 5% expired with a refresh
   token, 3% expired without, 2% dead), through the Store API at concurrency 32,
   and time the same reads again: the two should be close (counts, not scans);
3. time the write overhead of counting: compare-and-set transitions one at a time,
   with the counts kept and without (SQLite: the triggers dropped and made again;
   PostgreSQL: ``ALTER TABLE ... DISABLE TRIGGER``; Redis: the create and
   compare-and-set scripts as they were before counting), rounds interleaved;
4. measure the space the counts take (tables and indexes, or Redis keys).

Not part of ``python -m benchmarks`` (it fills stores for many minutes):
``python -m benchmarks.status [--flows N] [--tokens N] [--stores sqlite,redis,postgres]
[--quick] [--json FILE]``. ``--quick``: 10,000 flows and 1,000 tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import flowengine as fe
from flowengine import _plugins as plugins
from flowengine import digest

from benchmarks import _status_baseline as baseline
from benchmarks.stores import _cleanup, available

__all__ = ["main", "run_store"]

DAY = 86400.0
#: How each flow ends, and with which error code (half of them end; the rest are pending).
_ENDINGS = [
    ("exchanged", "answer", None),
    ("denied", "callback", "access_denied"),
    ("failed", "answer", "invalid_grant"),
]


def _flow(n: int, run: str, now: float) -> fe.Flow:
    at = now - random.uniform(0, DAY)
    flow = fe.Flow(
        id=f"{run}-{n}",
        spec="podio",
        state="redirected",
        created_at=at,
        expires_at=now + DAY,
        client_id="bench-client",
        redirect_uri="https://app.example.com/callback",
        state_hash=digest(f"{run}-{n}"),
        history=(fe.HistoryEntry(at, "start", "", "redirected"),),
    )
    return flow


def _moved(flow: fe.Flow, dest: str, event: str, error: str | None) -> fe.Flow:
    at = flow.created_at + 5
    entry = fe.HistoryEntry(at, event, flow.state, dest, error)
    return attrs.evolve(flow, state=dest, version=flow.version + 1, history=(*flow.history, entry))


def _token(n: int, run: str, now: float) -> fe.Token:
    roll = n % 100
    expires, refresh, dead = now + 6 * 3600, "r" * 40, False
    if roll < 10:
        expires = now + random.uniform(60, 7000)
    elif roll < 15:
        expires = now - random.uniform(60, DAY)
    elif roll < 18:
        expires, refresh = now - random.uniform(60, DAY), None
    elif roll < 20:
        dead = True
    return fe.Token(
        provider="podio",
        account=fe.AccountRef("user", f"{run}-{n}"),
        access_token="a" * 64,
        token_type="bearer",  # noqa: S106 - a token type, not a password
        obtained_at=now - 3600,
        expires_at=expires,
        refresh_token=refresh,
        dead=dead,
        dead_at=now - 60 if dead else None,
    )


async def _gather(count: int, make: Callable[[int], Awaitable[None]], concurrency: int = 32) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            await make(n)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def fill(store: fe.Store, run: str, first: int, flows: int, tokens_first: int, tokens: int) -> None:
    """Flows ``first..flows`` (each created, every second one moved to an end) and tokens likewise."""
    now = time.time()

    async def one_flow(i: int) -> None:
        n = first + i
        flow = _flow(n, run, now)
        await store.create(flow)
        if n % 2:
            dest, event, error = _ENDINGS[n % len(_ENDINGS)]
            assert await store.compare_and_set(_moved(flow, dest, event, error), 1)

    async def one_token(i: int) -> None:
        await store.put_token(_token(tokens_first + i, run, now))

    await _gather(flows - first, one_flow)
    await _gather(tokens - tokens_first, one_token)


async def time_reads(store: fe.Store, rounds: int = 15) -> dict[str, float]:
    """Median ms of ``flow_counts`` (24 h) and ``token_counts`` (2 h window, 20 listed)."""
    flows, tokens = [], []
    for _ in range(rounds):
        now = time.time()
        began = time.perf_counter()
        await store.flow_counts(since=now - DAY)
        flows.append(time.perf_counter() - began)
        began = time.perf_counter()
        await store.token_counts(now=now, within=7200, limit=20)
        tokens.append(time.perf_counter() - began)
    return {
        "flow_counts_ms": statistics.median(flows) * 1000,
        "token_counts_ms": statistics.median(tokens) * 1000,
    }


async def time_writes(
    name: str, url: str, store: fe.Store, run: str, rounds: int, per_round: int
) -> dict[str, float]:
    """µs per compare-and-set transition with the counts kept and without, rounds interleaved."""
    switch = await baseline.switch_for(name, url, store)
    now = time.time()
    sides: dict[str, list[float]] = {"counted": [], "uncounted": []}
    n = 0
    try:
        for r in range(rounds):
            for side in ("counted", "uncounted") if r % 2 == 0 else ("uncounted", "counted"):
                await switch(side == "counted")
                target = switch.store if side == "uncounted" and switch.store is not None else store
                flows = [_flow(n + i, f"{run}-w", now) for i in range(per_round)]
                n += per_round
                for flow in flows:
                    await target.create(flow)
                began = time.perf_counter()
                for flow in flows:
                    assert await target.compare_and_set(_moved(flow, "authorized", "callback", None), 1)
                sides[side].append((time.perf_counter() - began) / per_round)
    finally:
        await switch(True)
        await switch.close()
    counted, uncounted = statistics.median(sides["counted"]), statistics.median(sides["uncounted"])
    return {
        "cas_counted_us": counted * 1e6,
        "cas_uncounted_us": uncounted * 1e6,
        "overhead_us": (counted - uncounted) * 1e6,
    }


async def run_store(name: str, url: str, flows: int, tokens: int, quick: bool) -> dict[str, Any]:
    """Everything above for one store URL."""
    store = plugins.open_store(url)
    run = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {"flows": flows, "tokens": tokens}
    try:
        small_flows, small_tokens = flows // 100, tokens // 100
        began = time.perf_counter()
        await fill(store, run, 0, small_flows, 0, small_tokens)
        result["small"] = {"flows": small_flows, "tokens": small_tokens, **await time_reads(store)}
        await fill(store, run, small_flows, flows, small_tokens, tokens)
        result["fill_s"] = time.perf_counter() - began
        result["large"] = {"flows": flows, "tokens": tokens, **await time_reads(store)}
        counts = await store.flow_counts(since=time.time() - DAY)
        result["check"] = {
            "stored": sum(c.count for c in counts.states),
            "steps": sum(c.count for c in counts.steps),
            "tokens": sum(c.count for c in (await store.token_counts(now=time.time(), within=7200)).counts),
        }
        result["writes"] = await time_writes(name, url, store, run, 4 if quick else 8, 100 if quick else 500)
        result["space"] = await baseline.space(name, url)
    finally:
        await store.aclose()
    return result


def store_urls(tmp: Path) -> dict[str, str]:
    run = uuid.uuid4().hex[:12]
    return {
        "sqlite": f"sqlite://{tmp}/status-{run}.db",
        "redis": f"redis://127.0.0.1:6379/0?prefix=fe-status-{run}:",
        "postgres": f"postgresql://postgres@127.0.0.1:5432/test?schema=fe_status_{run}",
    }


def print_table(results: dict[str, Any]) -> None:
    """The table docs/performance.md holds."""
    print(
        "| store | flows / tokens | flow_counts ms | token_counts ms | CAS µs counted | uncounted"
        " | overhead |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results["stores"].items():
        if "skipped" in r:
            print(f"| {name} | skipped: {r['skipped']} | | | | | |")
            continue
        for size in ("small", "large"):
            s = r[size]
            w = r["writes"] if size == "large" else None
            cells = (
                [f"{w['cas_counted_us']:,.0f}", f"{w['cas_uncounted_us']:,.0f}", f"{w['overhead_us']:+,.0f}"]
                if w
                else ["", "", ""]
            )
            print(
                f"| {name} | {s['flows']:,} / {s['tokens']:,} | {s['flow_counts_ms']:.2f} | "
                f"{s['token_counts_ms']:.2f} | " + " | ".join(cells) + " |"
            )
    for name, r in results["stores"].items():
        if "space" in r:
            print(f"\n{name} space: " + ", ".join(f"{k} {v:,}" for k, v in r["space"].items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--stores", default="sqlite,redis,postgres")
    parser.add_argument("--quick", action="store_true", help="10,000 flows and 1,000 tokens: a smoke run")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the Redis keys and the PostgreSQL schema (SQLite's file is in a temporary folder)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    flows, tokens = (10_000, 1_000) if args.quick else (args.flows, args.tokens)
    results: dict[str, Any] = {
        "stores": {},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    with tempfile.TemporaryDirectory() as tmp:
        urls = store_urls(Path(tmp))
        for name in args.stores.split(","):
            url = urls[name]
            if not available(name):
                results["stores"][name] = {"skipped": "service not reachable"}
                continue
            print(f"{name}: filling {flows:,} flows and {tokens:,} tokens ...", file=sys.stderr, flush=True)
            try:
                results["stores"][name] = asyncio.run(run_store(name, url, flows, tokens, args.quick))
            finally:
                if not args.keep:
                    asyncio.run(_cleanup(name, url))
            print(json.dumps(results["stores"][name]), file=sys.stderr, flush=True)
    results["command"] = " ".join(
        ["python -m benchmarks.status", *(argv if argv is not None else sys.argv[1:])]
    )
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
