"""4. Scale curve: engine cost per flow with 10, 10k and 1M pending flows in the store.

Three memory stores are filled with pending flows (1M is 100k with
``--quick``), each behind its own engine; then, in interleaved rounds, each
engine runs whole flows (in-memory transport) and the CPU time of each step
is kept apart: ``start`` and ``callback`` (which includes the exchange and
both store writes). Target: flat, no step at the largest size more than 1.2x
its cost at 10 flows. The fill also shows that a million pending flows fit:
its time and the process's resident memory afterwards. The fill writes
records the engine would have made (``Store.create``) rather than calling
``start`` a million times, which would take minutes and measure nothing new.
Run alone: ``python -m benchmarks.scale [--quick]``.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from typing import Any

from benchmarks._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    MemoryTransport,
    Row,
    ratio_row,
    run_alone,
    stat,
)

__all__ = ["run"]

REDIRECT = "https://app.example.com/callback"


async def _fill(store: Any, count: int) -> None:
    """``count`` pending flows, as ``start`` stores them (history, digests, expiry)."""
    import flowengine as fe
    from flowengine import digest

    now = time.time()
    for index in range(count):
        await store.create(
            fe.Flow(
                id=f"pending-{index:08d}",
                spec="podio",
                state="redirected",
                created_at=now,
                expires_at=now + 3600,
                client_id=CLIENT_ID,
                redirect_uri=REDIRECT,
                state_hash=digest(f"state-{index}"),
                scope="global:all",
                history=(fe.HistoryEntry(now, "start", "", "redirected"),),
            )
        )


async def _steps(engine: Any, flows: int) -> tuple[float, float]:
    """CPU µs per flow of ``start`` and of ``callback`` (with the exchange)."""
    started = callbacks = 0.0
    for index in range(flows):
        began = time.process_time()
        flow = await engine.start(scope="global:all")
        middle = time.process_time()
        state = flow.authorization_url.rpartition("state=")[2]
        done = await engine.callback(f"{REDIRECT}?code=code-{index}&state={state}")
        ended = time.process_time()
        if done.state != "exchanged":
            raise RuntimeError(f"a flow ended {done.state}")
        started += middle - began
        callbacks += ended - middle
    return started / flows * 1e6, callbacks / flows * 1e6


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _run(sizes: tuple[int, ...], flows: int, rounds: int) -> dict[str, Any]:
    import flowengine as fe

    client = fe.Client(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT)
    engines: dict[int, Any] = {}
    fill: dict[int, dict[str, float]] = {}
    for size in sizes:
        engine = fe.AsyncEngine("podio", client=client, store="memory://", transport=MemoryTransport())
        rss = _rss_mb()
        began = time.perf_counter()
        await _fill(engine.store, size)
        fill[size] = {"seconds": time.perf_counter() - began, "rss_growth_mb": _rss_mb() - rss}
        await _steps(engine, 200)  # warm up
        engines[size] = engine
    gc.collect()
    figures: dict[int, dict[str, list[float]]] = {size: {"start": [], "callback": []} for size in sizes}
    for index in range(rounds):
        order = sizes if index % 2 == 0 else tuple(reversed(sizes))
        for size in order:
            start, callback = await _steps(engines[size], flows)
            figures[size]["start"].append(start)
            figures[size]["callback"].append(callback)
    return {"fill": fill, "us_per_flow": figures, "rss_mb": _rss_mb()}


def run(quick: bool) -> dict[str, Any]:
    """The three sizes, interleaved; a row per size and step, and the flatness targets."""
    sizes = (10, 10_000, 100_000 if quick else 1_000_000)
    result = asyncio.run(_run(sizes, flows=500 if quick else 2000, rounds=3 if quick else 5))
    figures = result["us_per_flow"]
    rows = []
    for size in sizes:
        for step in ("start", "callback"):
            rows.append(
                Row(
                    "scale",
                    f"{step} with {size:,} pending flows: CPU per flow",
                    stat(figures[size][step]),
                    "µs",
                )
            )
    largest = sizes[-1]
    for step in ("start", "callback"):
        ratios = [a / b for a, b in zip(figures[largest][step], figures[10][step], strict=True)]
        rows.append(
            ratio_row(
                "scale",
                f"{step}: {largest:,} / 10 pending flows",
                ratios,
                1.2,
                higher_is_better=False,
                figure=(f"{step} with {largest:,} pending flows", figures[largest][step]),
                baseline=(f"{step} with 10 pending flows", figures[10][step]),
            )
        )
    fill = result["fill"][largest]
    single = stat([fill["seconds"]])
    rows.append(Row("scale", f"fill {largest:,} pending flows", single, "s"))
    rows.append(
        Row(
            "scale",
            f"resident memory growth for {largest:,} pending flows",
            stat([fill["rss_growth_mb"]]),
            "MB",
        )
    )
    result["rows"] = rows
    result["us_per_flow"] = {str(size): steps for size, steps in figures.items()}
    result["fill"] = {str(size): value for size, value in result["fill"].items()}
    return result


if __name__ == "__main__":
    run_alone(run, __doc__)
