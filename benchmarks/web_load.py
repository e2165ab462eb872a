"""Load test of the web frontend: N concurrent simulated browsers completing whole flows.

    python -m benchmarks.web_load            # 50 browsers, 1000 flows, 1 then 2 workers
    python -m benchmarks.web_load --quick    # 10 browsers, 100 flows: a few seconds

Each browser is an httpx client with its own cookie jar. A flow is five
requests: ``GET /auth/podio`` on a worker (302), the sandbox's authorization
endpoint (which auto-consents, 302), the callback (303), and the result page
(200, "Authorized"), timed from the first request to the last. With two
workers the callback goes to the *other* worker, as a load balancer would
send it, so every flow crosses processes through the shared store.

The workers are ``flowengine web serve`` processes. The sandbox (consent:
approve) runs in a process of its own, served by the frontend's server code:
``flowengine sandbox serve`` binds its socket without ``IPPROTO_TCP``, so
asyncio leaves Nagle on and each of its answers waits ~40 ms for a delayed
ACK, which would be measured here as the frontend's. The store is Redis
(a fresh key prefix) when a server answers on 127.0.0.1:6379, else a SQLite
file; ``--store URL`` picks another. After each run the sandbox's record of
token requests is checked: exactly one per flow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import httpx

CLI = [sys.executable, "-c", "from flowengine.cli import main; main()"]
SANDBOX = [
    sys.executable,
    "-c",
    "from flowengine_sandbox.app import create_app\n"
    "from flowengine_sandbox.settings import SandboxSettings\n"
    "from flowengine_web._server import bind, serve_forever, url_of\n"
    "sock = bind('127.0.0.1', 0)\n"
    "app = create_app(SandboxSettings(consent='approve', rate_limit=None))\n"
    "serve_forever(app, sock, lambda: print('sandbox on', url_of(sock), flush=True))\n",
]
WIDTHS = (7, 7, 9, 8, 8, 8, 10)


class Process:
    """A server subprocess; ``url`` is read from the first line it prints that matches ``pattern``."""

    def __init__(self, command: Sequence[str], pattern: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - flowengine's own command, arguments from this file
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        )
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            found = re.search(pattern, line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise RuntimeError(f"{' '.join(command[3:5])} exited with {self.proc.wait()} before it started")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _default_store(tmp: Path) -> tuple[str, str]:
    """Redis with a fresh prefix if it answers, else a SQLite file; and a label for the report."""
    try:
        import redis

        with redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5) as client:
            client.ping()
        return f"redis://127.0.0.1:6379/0?prefix=fe-bench-{uuid.uuid4().hex[:12]}:", "redis"
    except Exception:
        return f"sqlite:///{tmp / 'bench.db'}", "sqlite"


def _cleanup_store(url: str) -> None:
    if url.startswith("redis://") and "prefix=" in url:
        import redis

        prefix = url.split("prefix=", 1)[1]
        with redis.Redis(host="127.0.0.1", port=6379) as client:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])


async def _one_flow(browser: httpx.AsyncClient, start: str, finish: str) -> float:
    """One whole flow: started on ``start``, called back on ``finish``; its duration in seconds."""
    began = time.perf_counter()
    started = await browser.get(f"{start}/auth/podio")
    if started.status_code != 302:
        raise RuntimeError(f"start answered {started.status_code}")
    consent = await browser.get(started.headers["location"])
    callback = consent.headers.get("location", "")
    if consent.status_code != 302 or not callback.startswith(start):
        raise RuntimeError(f"the sandbox answered {consent.status_code}")
    finished = await browser.get(finish + callback.removeprefix(start))
    if finished.status_code != 303:
        raise RuntimeError(f"the callback answered {finished.status_code}")
    page = await browser.get(finish + finished.headers["location"])
    if page.status_code != 200 or "<h1>Authorized</h1>" not in page.text:
        raise RuntimeError(f"the result page answered {page.status_code}")
    return time.perf_counter() - began


async def _drive(workers: list[str], browsers: int, flows: int) -> tuple[float, list[float]]:
    """``flows`` flows through ``browsers`` concurrent browsers; wall time and each flow's time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(flows):
        queue.put_nowait(index)
    times: list[float] = []
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)

    async def browse() -> None:
        async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as browser:
            while True:
                try:
                    index = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = workers[index % len(workers)]
                finish = workers[(index + 1) % len(workers)]
                times.append(await _one_flow(browser, start, finish))

    began = time.perf_counter()
    await asyncio.gather(*(browse() for _ in range(browsers)))
    return time.perf_counter() - began, times


def _token_requests(sandbox: str) -> int:
    return len(httpx.get(f"{sandbox}/_sandbox/token-requests", trust_env=False).json())


def run(worker_counts: Sequence[int], browsers: int, flows: int, store: str | None) -> list[dict[str, Any]]:
    """Run the load for each worker count; one result dict per count."""
    results = []
    with tempfile.TemporaryDirectory(prefix="fe-web-load-") as tmp:
        sandbox = Process(SANDBOX, r"sandbox on (http://\S+)", {})
        try:
            for count in worker_counts:
                url, label = (
                    (store, urlsplit_scheme(store)) if store else _default_store(Path(tmp) / str(count))
                )
                (Path(tmp) / str(count)).mkdir(exist_ok=True)
                env = {"FLOWENGINE_SANDBOX_URL": sandbox.url, "FLOWENGINE_WEB_SECRET": uuid.uuid4().hex * 2}
                args = [*CLI, "web", "serve", "--spec", "podio", "--store", url, "--port", "0", "--sandbox"]
                workers = [Process(args, r"flowengine web on (http://\S+?)/ ", env) for _ in range(count)]
                try:
                    urls = [worker.url for worker in workers]
                    asyncio.run(_drive(urls, min(browsers, 4), 4 * count))  # warm up every worker
                    before = _token_requests(sandbox.url)
                    wall, times = asyncio.run(_drive(urls, browsers, flows))
                    sent = _token_requests(sandbox.url) - before
                finally:
                    for worker in workers:
                        worker.stop()
                    if not store:
                        _cleanup_store(url)
                if sent != flows:
                    raise RuntimeError(f"{flows} flows sent {sent} token requests")
                ordered = sorted(times)
                results.append(
                    {
                        "workers": count,
                        "store": label,
                        "browsers": browsers,
                        "flows": flows,
                        "seconds": round(wall, 3),
                        "flows_per_second": round(flows / wall, 1),
                        "p50_ms": round(statistics.median(ordered) * 1000, 1),
                        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
                        "token_requests": sent,
                    }
                )
        finally:
            sandbox.stop()
    return results


def urlsplit_scheme(url: str) -> str:
    """The scheme of a store URL: what the report names (a URL may hold a password)."""
    return url.split(":", 1)[0]


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run, print a table (or JSON)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.web_load", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 browsers, 100 flows")
    parser.add_argument("--browsers", type=int, help="concurrent browsers (default 50)")
    parser.add_argument("--flows", type=int, help="flows per run (default 1000)")
    parser.add_argument(
        "--workers", default="1,2", help="worker counts to run, comma-separated (default 1,2)"
    )
    parser.add_argument("--store", help="store URL the workers share (default: Redis if up, else SQLite)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    options = parser.parse_args(argv)
    browsers = options.browsers or (10 if options.quick else 50)
    flows = options.flows or (100 if options.quick else 1000)
    counts = [int(n) for n in options.workers.split(",")]
    results = run(counts, browsers, flows, options.store)
    if options.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"web frontend load: {browsers} concurrent browsers, {flows} flows per run, podio spec, sandbox; "
        f"{os.cpu_count()} CPUs shared by the load, the sandbox and the workers"
    )
    columns = ("workers", "store", "flows/s", "p50 ms", "p99 ms", "seconds", "token reqs")
    print(" ".join(f"{name:>{width}}" for name, width in zip(columns, WIDTHS, strict=True)))
    keys = ("workers", "store", "flows_per_second", "p50_ms", "p99_ms", "seconds", "token_requests")
    for r in results:
        print(" ".join(f"{r[key]!s:>{width}}" for key, width in zip(keys, WIDTHS, strict=True)))


if __name__ == "__main__":
    main()
