"""Batch refreshes at 10,000 and 100,000 tokens beside raw aiohttp, resident memory per token, and the proof.

    python -m benchmarks.batch            # 10,000 and 100,000 tokens; proof with 2,000
    python -m benchmarks.batch --quick    # 1,000 and 2,000 tokens, c128 only; proof with 200

Each size runs in a fresh Python process of its own (so its resident memory is
its own), against a sandbox in another process with rate limits off
(``SandboxSettings(rate_limit=None)``; ``client_rate_limit`` is off by
default) and refresh tokens not rotated, so every round refreshes the same
tokens with the same requests. The tokens are first granted through the batch
(``podio-app``, one app per token) into a memory store. Then, in the same
process, interleaved round by round at concurrency 128:

- ``aiohttp.ClientSession``: the floor, what a user would write without
  flowengine: one session, a connector of 128 connections, 128 workers each
  posting the refresh request of the next token (the same JSON body), reading
  the JSON answer and keeping the new access token;
- ``flowengine Batch.refresh``: ``Batch(concurrency=128, account_limit=None)``
  over the default transport (aiohttp when installed, a pool of 128), every
  token of the store refreshed, checked, stored, and its result reported.

Target: the batch at least 0.8x the floor at 100,000 tokens (and at 10,000).
At the smallest size the same two sides also run at concurrency 1 and 32
(no target; not with ``--quick``). Then both sides run again at 128 with the
process's garbage collector as ``flowengine batch`` sets it (``tune_collector``:
first threshold 10,000 instead of CPython's 700), with the same target.
Resident memory (``VmRSS``, after a garbage collection) is read before the
grants, after them, and after one ``Batch.refresh`` with its report still held
(after a warm-up of 100 tokens in a store of its own, so that imports, the spec
and the pools are paid before the first reading): the growth per token of the
whole (store, engine, batch, report), and the larger size's over the smaller's
(target ≤ 1.2x: flat). The proof
refreshes N tokens through 10% injected faults under a per-key rate limit and
checks what tests/batch/test_refresh_proof.py checks. ``run(quick)`` returns
the figures and rows for the suite.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any

import flowengine as fe
import httpx

from benchmarks._common import Row, ratio_of, ratio_row, run_alone, stat
from flowengine_batch import BATCH_GC_THRESHOLD, Batch, GrantItem, RateLimit, tune_collector
from flowengine_memory import MemoryStore

CONCURRENCY = 128
FLOOR = "aiohttp.ClientSession"
BATCH = "flowengine Batch.refresh"
#: The label of the sides run again with the collector as the batch command sets it.
TUNED = f"c{CONCURRENCY}, gc threshold {BATCH_GC_THRESHOLD:,} (as flowengine batch)"
#: The batch's refreshes/s over the floor's; the largest size's memory per token over the smallest's.
RATE_TARGET, FLAT_TARGET = 0.8, 1.2
_FAULTS = [  # 10% of token requests fail
    {"kind": "status", "share": 0.05},
    {"kind": "rate_limit", "share": 0.02, "retry_after": 0},
    {"kind": "html", "status": 502, "share": 0.01},
    {"kind": "reset", "stage": "before", "share": 0.01},
    {"kind": "reset", "share": 0.01},
]

_SANDBOX = """
import sys
from flowengine_sandbox.app import create_app
from flowengine.serving import bind, serve_app_forever, url_of
from flowengine_sandbox.settings import SandboxApp, SandboxSettings
apps = {{i: SandboxApp(i, f"app-token-{{i}}") for i in range(3000, 3000 + {count})}}
settings = SandboxSettings(apps=apps, rate_limit=None, rotate_refresh_tokens=False)
sock = bind("127.0.0.1", 0)
serve_app_forever(create_app(settings), sock, lambda: print("sandbox on", url_of(sock), flush=True))
"""


class Sandbox:
    """The sandbox in a subprocess, with ``count`` apps registered."""

    def __init__(self, count: int) -> None:
        code = _SANDBOX.format(count=count)
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        line = stdout.readline()
        found = re.search(r"(http://\S+)", line)
        if not found:
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        self.url = found.group(1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def get(self, path: str) -> Any:
        return httpx.get(self.url + path, timeout=30, trust_env=False).json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(self.url + path, json=body, timeout=30, trust_env=False)
        response.raise_for_status()
        return response.json()


def _client() -> fe.Client:
    return fe.Client("sandbox-client", "sandbox-secret")


async def _seed(sandbox: Sandbox, store: MemoryStore, count: int) -> list[fe.Token]:
    batch = Batch(concurrency=CONCURRENCY, account_limit=None)
    engine = batch.engine(
        "podio-app", client=_client(), store=store, endpoints={"token": _token_url(sandbox)}
    )
    items = [
        GrantItem(f"row {i}", {"app_id": str(3000 + i), "app_token": f"app-token-{3000 + i}"})
        for i in range(count)
    ]
    report = await batch.grant(engine, "app", items).wait()
    assert report.counts == {"granted": count}, report.counts
    await engine.transport.aclose()  # the store is shared with the runs below: keep it open
    return sorted(await store.list_tokens(), key=lambda t: t.key)


def _token_url(sandbox: Sandbox) -> str:
    return sandbox.url + "/oauth/token/v2"


def rss_bytes() -> int:
    """This process's resident memory now, after a garbage collection (Linux: ``/proc/self/status``)."""
    gc.collect()
    status = Path("/proc/self/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) * 1024 if found else 0


async def _workers(count: int, concurrency: int, work: Callable[[int], Awaitable[None]]) -> float:
    """Run ``work(i)`` for every i with ``concurrency`` workers; the seconds it took."""
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            await work(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _floor(url: str, refresh_tokens: Sequence[str], concurrency: int) -> float:
    """Refreshes per second of plain aiohttp: one session, the same requests, the answers kept."""
    import aiohttp

    kept: dict[int, str] = {}
    body = {"grant_type": "refresh_token", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}
    connector = aiohttp.TCPConnector(limit=max(100, concurrency))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(index: int) -> None:
            async with session.post(url, json={**body, "refresh_token": refresh_tokens[index]}) as response:
                response.raise_for_status()
                kept[index] = (await response.json())["access_token"]

        seconds = await _workers(len(refresh_tokens), concurrency, post)
    assert len(kept) == len(refresh_tokens)
    return len(refresh_tokens) / seconds


async def _batch(url: str, store: MemoryStore, count: int, concurrency: int) -> tuple[float, Any]:
    """Refreshes per second of ``Batch.refresh`` over every stored token; and its report."""
    batch = Batch(concurrency=concurrency, account_limit=None)
    engine = batch.engine("podio-app", client=_client(), store=store, endpoints={"token": url})
    started = time.perf_counter()
    report = await batch.refresh(engine).wait()
    seconds = time.perf_counter() - started
    await engine.transport.aclose()
    assert report.counts == {"refreshed": count}, report.counts
    return count / seconds, report


async def measure_size(count: int, rounds: int, concurrencies: Sequence[int]) -> dict[str, Any]:
    """One size in this process: memory through the grants and a refresh, then the sides interleaved."""
    sandbox = Sandbox(count)
    try:
        url = _token_url(sandbox)
        warm = MemoryStore()  # one-time costs (imports, the spec, the pools) before the first reading
        await _seed(sandbox, warm, min(100, count))
        await _batch(url, warm, min(100, count), CONCURRENCY)
        del warm
        memory = {"start": rss_bytes()}
        store = MemoryStore()
        tokens = await _seed(sandbox, store, count)
        memory["granted"] = rss_bytes()
        _, report = await _batch(url, store, count, CONCURRENCY)
        memory["refreshed"] = rss_bytes()
        del report
        refresh_tokens = [t.refresh_token or "" for t in tokens]
        del tokens
        figures: dict[str, dict[str, list[float]]] = {}
        for concurrency in concurrencies:
            figures[f"c{concurrency}"] = await _interleaved(url, store, refresh_tokens, concurrency, rounds)
        before = tune_collector()  # c128 again, the collector as `flowengine batch` sets it
        try:
            figures[TUNED] = await _interleaved(url, store, refresh_tokens, CONCURRENCY, rounds)
        finally:
            gc.set_threshold(*before)
    finally:
        sandbox.stop()
    return {"tokens": count, "rss": memory, "per_second": figures}


async def _interleaved(
    url: str, store: MemoryStore, refresh_tokens: Sequence[str], concurrency: int, rounds: int
) -> dict[str, list[float]]:
    """Refreshes per second of both sides, round by round, the side that goes first alternating."""
    sides = {
        FLOOR: lambda: _floor(url, refresh_tokens, concurrency),
        BATCH: lambda: _first(_batch(url, store, len(refresh_tokens), concurrency)),
    }
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for index in range(rounds):
        for name in list(sides)[index % 2 :] + list(sides)[: index % 2]:
            runs[name].append(await sides[name]())
    return runs


async def _first(pair: Awaitable[tuple[float, Any]]) -> float:
    return (await pair)[0]


def _size_in_child(count: int, rounds: int, concurrencies: Sequence[int]) -> dict[str, Any]:
    """``measure_size`` in a fresh interpreter: its memory figures are its own."""
    with tempfile.TemporaryDirectory(prefix="fe-bench-batch-") as tmp:
        out = Path(tmp) / "size.json"
        code = (
            "import asyncio, json, pathlib\n"
            "from benchmarks.batch import measure_size\n"
            f"result = asyncio.run(measure_size({count}, {rounds}, {list(concurrencies)!r}))\n"
            f"pathlib.Path({str(out)!r}).write_text(json.dumps(result))\n"
        )
        done = subprocess.run([sys.executable, "-c", code], check=False, timeout=3600)  # noqa: S603
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"the batch benchmark at {count:,} tokens failed ({done.returncode})")
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def size_rows(result: dict[str, Any]) -> list[Row]:
    """Each side's refreshes per second per concurrency, and the batch over the floor (target at 128)."""
    count = result["tokens"]
    rows: list[Row] = []
    for label, runs in result["per_second"].items():
        bench = f"batch refresh {label}, {count:,} tokens"
        rows += [Row(bench, f"{name}: refreshes/s", stat(values), "/s") for name, values in runs.items()]
        limit = RATE_TARGET if label in (f"c{CONCURRENCY}", TUNED) else None
        rows.append(ratio_of(bench, runs, BATCH, FLOOR, limit))
    return rows


def memory_rows(results: Sequence[dict[str, Any]]) -> list[Row]:
    """Resident memory growth per token at each size, and the largest size's over the smallest's."""
    bench = "batch memory"
    per_token: dict[str, list[float]] = {}
    rows: list[Row] = []
    for result in results:
        count, rss = result["tokens"], result["rss"]
        granted = (rss["granted"] - rss["start"]) / count
        whole = (rss["refreshed"] - rss["start"]) / count
        name = f"{count:,} tokens"
        per_token[name] = [whole]
        rows.append(Row(bench, f"{name}: resident growth per token, granted", stat([granted]), "B"))
        rows.append(Row(bench, f"{name}: resident growth per token, granted + refreshed", stat([whole]), "B"))
    names = list(per_token)
    if len(names) < 2:
        return rows
    small, large = names[0], names[-1]
    ratio = per_token[large][0] / per_token[small][0]
    rows.append(
        ratio_row(
            bench,
            f"per token: {large} / {small}",
            [ratio],
            FLAT_TARGET,
            higher_is_better=False,
            figure=(f"{large}: growth per token", per_token[large]),
            baseline=(f"{small}: growth per token", per_token[small]),
        )
    )
    return rows


async def _proof(sandbox: Sandbox, count: int) -> dict[str, Any]:
    """N tokens through 10% faults and a per-key limit of 100/s: each refreshed once, limits kept."""
    store = MemoryStore()
    tokens = await _seed(sandbox, store, count)
    before = {t.refresh_token: t.key for t in tokens}
    # Limits and faults from here on: the grants above were not limited (nor counted).
    limits = {
        "rate_limit": 3,
        "client_rate_limit": 100,
        "rate_limit_window": 1.0,
        "rotate_refresh_tokens": True,
    }
    sandbox.post("/_sandbox/settings", limits)
    sandbox.post("/_sandbox/faults", {"faults": _FAULTS, "seed": 6})
    batch = Batch(
        concurrency=32,
        account_limit=RateLimit(3, 1.0),
        client_limit=RateLimit(100, 1.0),
        retry=fe.RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.5),
    )
    engine = batch.engine(
        "podio-app", client=_client(), store=store, endpoints={"token": _token_url(sandbox)}
    )
    started = time.perf_counter()
    report = await batch.refresh(engine).wait()
    elapsed = time.perf_counter() - started
    await engine.aclose()
    counters = sandbox.get("/_sandbox/counters")
    refreshes = [
        r
        for r in sandbox.get("/_sandbox/token-requests")
        if r["grant_type"] == "refresh_token" and r["status"] == 200
    ]
    injected = len(sandbox.get("/_sandbox/faults")["injected"])
    per_token: dict[str, int] = {}
    fingerprints = {_fingerprint(value): key for value, key in before.items() if value}
    for record in refreshes:
        key = fingerprints.get(record["fields"]["refresh_token"], "<rotated>")
        per_token[key] = per_token.get(key, 0) + 1
    typed = all(r.outcome == "refreshed" or r.error for r in report.results.values())
    return {
        "tokens": count,
        "seconds": round(elapsed, 2),
        "counts": report.counts,
        "errors": report.errors,
        "faults_injected": injected,
        "every_token_typed": typed and report.complete,
        "max_refreshes_per_token": max(per_token.values(), default=0),
        "rotated_refreshed": per_token.get("<rotated>", 0),
        "peak_calls_per_window": counters["peak"],
        "limits": {"account": counters["limit"], "client": counters["client_limit"]},
        "rejected_by_sandbox": counters["rejected"],
    }


def _fingerprint(secret: str) -> str:
    from flowengine_sandbox.state import fingerprint

    return fingerprint(secret)


def proof_rows(proof: dict[str, Any]) -> list[Row]:
    """The proof's checks as rows (counts, not speeds)."""
    bench = f"batch proof, {proof['tokens']:,} tokens"
    rows = [
        Row(bench, "seconds", stat([proof["seconds"]]), "s"),
        Row(bench, "faults injected", stat([proof["faults_injected"]]), ""),
        Row(bench, "most refreshes of one token", stat([proof["max_refreshes_per_token"]]), ""),
        Row(bench, "rejected by the sandbox's limits", stat([proof["rejected_by_sandbox"]]), ""),
    ]
    rows += [Row(bench, f"outcome {name}", stat([n]), "") for name, n in sorted(proof["counts"].items())]
    return rows


def run(quick: bool = False, sizes: Sequence[int] | None = None) -> dict[str, Any]:
    """Measure every size (default 10,000 and 100,000; quick 1,000 and 2,000), then the proof."""
    default, rounds, proof_count = ((1000, 2000), 2, 200) if quick else ((10_000, 100_000), 2, 2_000)
    sizes = sizes or default
    results = []
    for index, count in enumerate(sizes):
        small = index == 0 and count <= 10_000 and not quick
        concurrencies = (1, 32, CONCURRENCY) if small else (CONCURRENCY,)
        results.append(_size_in_child(count, rounds, concurrencies))
    proof_box = Sandbox(proof_count)
    try:
        proof = asyncio.run(_proof(proof_box, proof_count))
    finally:
        proof_box.stop()
    rows = [row for result in results for row in size_rows(result)]
    rows += memory_rows(results)
    rows += proof_rows(proof)
    return {"sizes": results, "proof": proof, "rows": rows}


if __name__ == "__main__":
    run_alone(run, __doc__)
