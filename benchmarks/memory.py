"""3. Memory per pending flow in the memory store, beside a plain dict of the same fields.

``tracemalloc`` counts what stays allocated after ``AsyncEngine.start`` has
stored N pending flows (100,000; 5,000 with ``--quick``): the Flow records
with their history, the ids and digests, and the store's two indexes (by id
and by state). The baseline is what a hand-written app would keep for the
same flows: a dict keyed by the state digest holding a plain dict of the same
22 fields, its strings and floats made the same way (a fresh id and digest per
flow, the history as a tuple of one tuple). Targets: at most 1 KB per flow and
at most 1.2x the plain dict. Run alone: ``python -m benchmarks.memory [--quick]``.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
import tracemalloc
from typing import Any

from benchmarks._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    MemoryTransport,
    Row,
    ratio_row,
    run_alone,
    stat,
    verdict,
)

__all__ = ["engine_bytes_per_flow", "plain_bytes_per_flow", "run"]

REDIRECT = "https://app.example.com/callback"


def engine_bytes_per_flow(count: int) -> float:
    """Bytes that stay allocated per pending flow started by the engine on ``memory://``."""
    import flowengine as fe

    async def fill() -> Any:
        client = fe.Client(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT)
        engine = fe.AsyncEngine("podio", client=client, store="memory://", transport=MemoryTransport())
        await engine.start(scope="global:all")  # warm: caches, lazy imports, the first dict slots
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            await engine.start(scope="global:all")
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        if len(await engine.flows()) != count + 1:
            raise RuntimeError("the store does not hold every pending flow")
        return used

    return float(asyncio.run(fill())) / count


def plain_bytes_per_flow(count: int) -> float:
    """Bytes per flow of a plain dict of the same fields keyed by the state digest."""
    import hashlib

    kept: dict[str, dict[str, Any]] = {}
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(count):
        now = time.time()
        state_hash = hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()
        kept[state_hash] = {
            "id": secrets.token_urlsafe(16),
            "spec": "podio",
            "state": "redirected",
            "created_at": now,
            "expires_at": now + 600,
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT,
            "state_hash": state_hash,
            "version": 1,
            "scope": "global:all",
            "session_hash": None,
            "code_verifier": None,
            "code": None,
            "callback_digest": None,
            "exchange_started_at": None,
            "account": None,
            "token_key": None,
            "token_fingerprint": None,
            "granted_scope": None,
            "error": None,
            "history": ((now, "start", "", "redirected", None),),
            "authorization_url": None,
        }
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / count


def run(quick: bool) -> dict[str, Any]:
    """Engine and plain dict, interleaved over rounds; bytes per flow and the targets."""
    count = 5_000 if quick else 100_000
    rounds = 2 if quick else 3
    engine: list[float] = []
    plain: list[float] = []
    for _ in range(rounds):
        engine.append(engine_bytes_per_flow(count))
        gc.collect()
        plain.append(plain_bytes_per_flow(count))
        gc.collect()
    per_flow = stat(engine)
    bench = f"memory, {count:,} pending flows"
    rows = [
        Row(
            bench,
            "flowengine memory store: per pending flow",
            per_flow,
            "B",
            "≤ 1024 B",
            verdict(per_flow.median, 1024, higher_is_better=False),
        ),
        Row(bench, "plain dict of the same fields, keyed by state", stat(plain), "B"),
        ratio_row(
            bench,
            "flowengine / plain dict",
            [a / b for a, b in zip(engine, plain, strict=True)],
            1.2,
            higher_is_better=False,
            figure=("flowengine memory store: per pending flow", engine),
            baseline=("plain dict of the same fields, keyed by state", plain),
        ),
    ]
    return {"flows": count, "engine_bytes": engine, "plain_bytes": plain, "rows": rows}


if __name__ == "__main__":
    run_alone(run, __doc__)
