"""Batch refreshes: the engine against plain httpx, and the issue's proof at full size.

    python -m benchmarks.batch            # 10,000 tokens at concurrency 1, 32, 128; proof with 2,000
    python -m benchmarks.batch --quick    # 500 tokens; proof with 200: well under a minute

The sandbox runs in a process of its own (so the client's event loop has a core
to itself), with rate limits off and refresh tokens not rotated: every run then
refreshes the same tokens with the same requests. For each concurrency it
measures, on the same sandbox and in one run:

- ``httpx``: plain ``httpx.AsyncClient`` posts of the refresh requests (the floor);
- ``engine``: ``AsyncEngine.refresh()`` per token (memory store, httpx transport);
- ``batch``: ``Batch.refresh()`` (the engine plus the rate limiter, progress, results);
- ``aiohttp`` (plain, when installed): whether another client library would be faster.

``ratio`` is engine (or batch) refreshes per second over plain httpx's. The proof
refreshes N tokens through 10% injected faults under a per-key rate limit and
checks what tests/batch/test_refresh_proof.py checks. ``run(quick)`` returns
the figures as a dict for a suite runner.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Any

import flowengine as fe
import httpx

from flowengine_batch import Batch, GrantItem, RateLimit
from flowengine_memory import MemoryStore

CONCURRENCY = (1, 32, 128)
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


async def _workers(count: int, concurrency: int, work: Callable[[int], Awaitable[None]]) -> float:
    """Run ``work(i)`` for every i with ``concurrency`` workers; the seconds it took."""
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            await work(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _plain_httpx(url: str, refresh_tokens: Sequence[str], concurrency: int) -> float:
    limits = httpx.Limits(
        max_connections=max(100, concurrency), max_keepalive_connections=max(100, concurrency)
    )
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30) as client:

        async def post(index: int) -> None:
            body = {
                "grant_type": "refresh_token",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
            }
            response = await client.post(url, json={**body, "refresh_token": refresh_tokens[index]})
            response.raise_for_status()

        return await _workers(len(refresh_tokens), concurrency, post)


async def _plain_aiohttp(url: str, refresh_tokens: Sequence[str], concurrency: int) -> float | None:
    try:
        import aiohttp
    except ImportError:
        return None
    connector = aiohttp.TCPConnector(limit=max(100, concurrency))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(index: int) -> None:
            body = {
                "grant_type": "refresh_token",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
            }
            async with session.post(url, json={**body, "refresh_token": refresh_tokens[index]}) as response:
                response.raise_for_status()
                await response.read()

        return await _workers(len(refresh_tokens), concurrency, post)


async def _seed(sandbox: Sandbox, store: MemoryStore, count: int) -> list[fe.Token]:
    batch = Batch(concurrency=64, account_limit=None)
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


async def _compare(sandbox: Sandbox, count: int, profile: bool) -> list[dict[str, Any]]:
    store = MemoryStore()
    tokens = await _seed(sandbox, store, count)
    refresh_tokens = [t.refresh_token or "" for t in tokens]
    url = _token_url(sandbox)
    rows = []
    for concurrency in CONCURRENCY:
        row: dict[str, Any] = {"tokens": count, "concurrency": concurrency}
        row["httpx"] = count / await _plain_httpx(url, refresh_tokens, concurrency)
        aio = await _plain_aiohttp(url, refresh_tokens, concurrency)
        row["aiohttp"] = count / aio if aio else None
        config = fe.TransportConfig(max_connections=max(100, concurrency))
        engine = fe.AsyncEngine(
            "podio-app", client=_client(), store=store, endpoints={"token": url}, transport_config=config
        )
        keys = [t.key for t in tokens]

        async def refresh(index: int, engine: fe.AsyncEngine = engine, keys: list[str] = keys) -> None:
            await engine.refresh(keys[index])

        row["engine"] = count / await _workers(count, concurrency, refresh)
        await engine.transport.aclose()
        batch = Batch(concurrency=concurrency, account_limit=None)
        batched = batch.engine("podio-app", client=_client(), store=store, endpoints={"token": url})
        profiler = cProfile.Profile() if profile and concurrency == 32 else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        report = await batch.refresh(batched).wait()
        if profiler:
            profiler.disable()
            row["profile"] = _top(profiler)
        row["batch"] = count / (time.perf_counter() - started)
        assert report.counts == {"refreshed": count}, report.counts
        await batched.transport.aclose()
        aio_transport = _aiohttp_transport(concurrency)
        if aio_transport is not None:
            aio_engine = fe.AsyncEngine(
                "podio-app", client=_client(), store=store, endpoints={"token": url}, transport=aio_transport
            )

            async def refresh_aio(
                index: int, engine: fe.AsyncEngine = aio_engine, keys: list[str] = keys
            ) -> None:
                await engine.refresh(keys[index])

            row["engine_aiohttp"] = count / await _workers(count, concurrency, refresh_aio)
            await aio_transport.aclose()
            aio_batch = Batch(concurrency=concurrency, account_limit=None)
            aio_batched = aio_batch.engine(
                "podio-app", client=_client(), store=store, endpoints={"token": url},
                transport=_aiohttp_transport(concurrency),
            )  # fmt: skip
            started = time.perf_counter()
            await aio_batch.refresh(aio_batched).wait()
            row["batch_aiohttp"] = count / (time.perf_counter() - started)
            await aio_batched.transport.aclose()
        row["ratio_engine"] = row["engine"] / row["httpx"]
        row["ratio_batch"] = row["batch"] / row["httpx"]
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _top(profiler: cProfile.Profile, lines: int = 12) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue()


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


_COLUMNS = ("tokens", "conc", "httpx", "aiohttp", "engine", "batch", "eng+aio", "bat+aio", "eng/hx", "bat/hx")
_KEYS = ("tokens", "concurrency", "httpx", "aiohttp", "engine", "batch", "engine_aiohttp", "batch_aiohttp",
         "ratio_engine", "ratio_batch")  # fmt: skip


def _line(row: dict[str, Any]) -> str:
    cells = []
    for key in _KEYS:
        value = row.get(key)
        cells.append(
            "       -" if value is None else f"{value:8.2f}" if key.startswith("ratio") else f"{value:8.0f}"
        )
    return " ".join(cells)


class AiohttpTransport:
    """A Transport over one aiohttp session: what a transport plugin built on aiohttp would do."""

    def __init__(self, connections: int) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))

    async def send(self, request: fe.HttpRequest) -> fe.HttpResponse:
        async with self._session.request(
            request.method, request.url, headers=request.headers, data=request.body, allow_redirects=False
        ) as response:
            body = await response.read()
            return fe.HttpResponse(response.status, dict(response.headers), body)

    async def aclose(self) -> None:
        await self._session.close()


def _aiohttp_transport(concurrency: int) -> AiohttpTransport | None:
    try:
        return AiohttpTransport(max(100, concurrency))
    except ImportError:
        return None


def run(quick: bool = False, profile: bool = False) -> dict[str, Any]:
    """Measure; return ``{"refresh": [rows], "proof": {...}}`` (refreshes per second, ratios)."""
    count, proof_count = (500, 200) if quick else (10_000, 2_000)
    print(" ".join(f"{name:>8}" for name in _COLUMNS))
    sandbox = Sandbox(count)
    try:
        rows = asyncio.run(_compare(sandbox, count, profile))
    finally:
        sandbox.stop()
    proof_box = Sandbox(proof_count)
    try:
        proof = asyncio.run(_proof(proof_box, proof_count))
    finally:
        proof_box.stop()
    print("proof:", json.dumps(proof))
    return {"refresh": rows, "proof": proof}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="500 tokens and a 200-token proof")
    parser.add_argument(
        "--profile", action="store_true", help="print where the batch run at concurrency 32 spends"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    results = run(args.quick, args.profile)
    if args.profile:
        for row in results["refresh"]:
            if "profile" in row:
                print(row["profile"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
