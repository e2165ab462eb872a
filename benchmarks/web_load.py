"""Load test of the web frontend beside Authlib's Starlette client: N browsers completing whole flows.

    python -m benchmarks.web_load            # 50 browsers, 300 flows, 2 rounds, 1 then 2 workers
    python -m benchmarks.web_load --quick    # 8 browsers, 40 flows, 1 round: under a minute

Two sides, driven by the same load generator against the same sandbox, their
runs interleaved (A B, then B A): flowengine's web frontend, and the app a user
would write instead, a minimal Starlette app with Authlib's Starlette client
and ``SessionMiddleware`` (benchmarks/_authlib_web.py; it saves each token in
the same Redis), as written (a new httpx client, so a new SSL context, per
Authlib call) and with one SSL context shared by those clients. Targets against
each: flowengine's flows/s at least 1.0x, and its p99 flow latency at most
1.0x, with 1 and with 2 workers.

Each browser is an httpx client with its own cookie jar, all of them made before
the clock starts and sharing one SSL context (see ``_drive``). A flow is four
requests: ``GET /auth/podio`` on a worker (302), the sandbox's authorization
endpoint (which auto-consents, 302), the callback (303), and the result page
(200, "Authorized"), timed from the first request to the last. With two
workers the callback goes to the *other* worker, as a load balancer would
send it, so every flow crosses processes through the shared store.

The workers are ``flowengine web serve`` processes, or the Authlib app's,
each served by the same uvicorn setup (``flowengine.serving``, no access log). The sandbox (consent:
approve) runs in a process of its own, served by the frontend's server code:
``flowengine sandbox serve`` binds its socket without ``IPPROTO_TCP``, so
asyncio leaves Nagle on and each of its answers waits ~40 ms for a delayed
ACK, which would be measured here as the frontend's. The store is Redis
(a fresh key prefix) when a server answers on 127.0.0.1:6379, else a SQLite
file; ``--store URL`` picks another. After each run the sandbox's record of
token requests is checked: never more than one per flow, and for flowengine
one for every completed flow. A flow that does not end on the "Authorized"
page (a browser gives up after 30 s) is counted as failed, by where it
stopped, and left out of its side's flows/s and latency; the table shows the
failed flows of each side that had any. Beside them, the CPU each side's workers
used per completed flow (user and system time, from ``/proc``; no target): the
figure the load of a shared machine disturbs least.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import ssl
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

from benchmarks.__main__ import print_rows
from benchmarks._common import Row, ratio_of, stat

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
AUTHLIB = [sys.executable, "-m", "benchmarks._authlib_web"]
FLOWENGINE = "flowengine web"
AUTHLIB_SIDE = "authlib (Starlette client)"
AUTHLIB_TLS = "authlib, one SSL context"
SIDES = (FLOWENGINE, AUTHLIB_SIDE, AUTHLIB_TLS)


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


class FlowFailed(Exception):
    """A flow that did not end on the "Authorized" page; the message says where it stopped."""


async def _get(browser: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET ``url``, once more if the server closed the kept-alive connection as the request went out.

    Under load a browser's idle connection can outlive the server's keep-alive
    timeout (uvicorn's 5 s) and be closed just as it is reused; a browser then
    sends the request again on a new connection, and so does this.
    """
    try:
        return await browser.get(url)
    except httpx.RemoteProtocolError:
        return await browser.get(url)


async def _one_flow(browser: httpx.AsyncClient, start: str, finish: str) -> float:
    """One whole flow: started on ``start``, called back on ``finish``; its duration in seconds."""
    began = time.perf_counter()
    started = await _get(browser, f"{start}/auth/podio")
    if started.status_code != 302:
        raise FlowFailed(f"start answered {started.status_code}")
    consent = await _get(browser, started.headers["location"])
    callback = consent.headers.get("location", "")
    if consent.status_code != 302 or not callback.startswith(start):
        raise FlowFailed(f"the sandbox answered {consent.status_code}")
    finished = await _get(browser, finish + callback.removeprefix(start))
    if finished.status_code != 303:
        raise FlowFailed(f"the callback answered {finished.status_code}")
    page = await _get(browser, finish + finished.headers["location"])
    if page.status_code != 200 or "<h1>Authorized</h1>" not in page.text:
        heading = re.search(r"<h1>(.*?)</h1>", page.text)  # the page's title: never a token
        code = re.search(r"Error code: <code>(.*?)</code>", page.text)
        title = (heading.group(1) if heading else "?") + (f" ({code.group(1)})" if code else "")
        raise FlowFailed(f"the result page answered {page.status_code}: {title}")
    return time.perf_counter() - began


async def _drive(workers: list[str], browsers: int, flows: int) -> tuple[float, list[float], dict[str, int]]:
    """``flows`` flows through ``browsers`` concurrent browsers; wall time, each completed flow's time,
    and the failed ones by where they stopped (a browser times out after 30 s).

    The browsers are made before the clock starts, sharing one SSL context (every URL
    here is http://): an httpx client made with its own loads the CA bundle, tens of
    ms on a loaded machine, and 50 of them made on the load's event loop as the run
    begins held up the first flows of either side by seconds, which were its p99.
    """
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(flows):
        queue.put_nowait(index)
    times: list[float] = []
    failures: dict[str, int] = {}
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    tls = ssl.create_default_context()
    clients = [
        httpx.AsyncClient(limits=limits, timeout=30, trust_env=False, verify=tls) for _ in range(browsers)
    ]

    async def browse(browser: httpx.AsyncClient) -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = workers[index % len(workers)]
            finish = workers[(index + 1) % len(workers)]
            try:
                times.append(await _one_flow(browser, start, finish))
            except (FlowFailed, httpx.HTTPError) as exc:
                reason = str(exc) if isinstance(exc, FlowFailed) else type(exc).__name__
                failures[reason] = failures.get(reason, 0) + 1

    try:
        began = time.perf_counter()
        await asyncio.gather(*(browse(client) for client in clients))
        wall = time.perf_counter() - began
    finally:
        for client in clients:
            await client.aclose()
    return wall, times, failures


def _token_requests(sandbox: str) -> int:
    return len(httpx.get(f"{sandbox}/_sandbox/token-requests", trust_env=False).json())


def _workers(side: str, count: int, sandbox: str, store: str) -> list[Process]:
    """``count`` workers of one side, sharing a session secret and (flowengine) a store."""
    secret = uuid.uuid4().hex * 2
    if side == FLOWENGINE:
        env = {"FLOWENGINE_SANDBOX_URL": sandbox, "FLOWENGINE_WEB_SECRET": secret}
        args = [*CLI, "web", "serve", "--spec", "podio", "--store", store, "--port", "0", "--sandbox"]
        return [Process(args, r"flowengine web on (http://\S+?)/ ", env) for _ in range(count)]
    env = {"AUTHLIB_WEB_SANDBOX": sandbox, "AUTHLIB_WEB_SECRET": secret}
    env["AUTHLIB_WEB_SHARED_TLS"] = "1" if side == AUTHLIB_TLS else "0"
    if store.startswith("redis://"):
        env["AUTHLIB_WEB_REDIS"] = store.split("prefix=", 1)[1] + "authlib:"
    elif count > 1:
        raise RuntimeError("the Authlib app shares its tokens between workers through Redis only")
    return [Process(AUTHLIB, r"authlib web on (http://\S+?)/ ", env) for _ in range(count)]


def _cpu_seconds(pids: Sequence[int]) -> float | None:
    """CPU seconds (user and system) these processes have used so far; None without ``/proc``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _measure(side: str, workers: list[Process], sandbox: str, browsers: int, flows: int) -> dict[str, Any]:
    """One run of ``flows`` flows; completed flows/s, p50 and p99 (ms) of those, the failures, and
    the CPU the workers used per completed flow (ms; None where ``/proc`` is not there).

    Failed flows are counted, by where they stopped, and left out of the figures;
    more token requests than flows (a flow that sent two) fails the run.
    """
    before = _token_requests(sandbox)
    pids = [worker.proc.pid for worker in workers]
    cpu_before = _cpu_seconds(pids)
    wall, times, failures = asyncio.run(_drive([worker.url for worker in workers], browsers, flows))
    cpu_after = _cpu_seconds(pids)
    sent = _token_requests(sandbox) - before
    if sent > flows or (side == FLOWENGINE and sent < len(times)):
        raise RuntimeError(f"{side}: {flows} flows sent {sent} token requests; failed: {failures}")
    if not times:
        raise RuntimeError(f"{side}: every flow failed: {failures}")
    ordered = sorted(times)
    return {
        "failed": sum(failures.values()),
        "failures": failures,
        "flows_per_second": len(times) / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "worker_cpu_ms": None
        if cpu_before is None or cpu_after is None
        else (cpu_after - cpu_before) * 1000 / len(times),
    }


def measure(count: int, sandbox: str, store: str, browsers: int, flows: int, rounds: int) -> dict[str, Any]:
    """Both sides with ``count`` workers each, warmed up, then ``rounds`` runs each, interleaved."""
    workers = {side: _workers(side, count, sandbox, store) for side in SIDES}
    try:
        for side in SIDES:
            urls = [worker.url for worker in workers[side]]
            asyncio.run(_drive(urls, min(browsers, 4), 4 * count))  # warm up every worker
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for index in range(rounds):
            shift = index % len(SIDES)
            for side in SIDES[shift:] + SIDES[:shift]:
                runs[side].append(_measure(side, workers[side], sandbox, browsers, flows))
        return runs
    finally:
        for started in workers.values():
            for worker in started:
                worker.stop()


def rows_of(count: int, label: str, runs: dict[str, list[dict[str, Any]]]) -> list[Row]:
    """Each side's flows/s, p99 and worker CPU per flow, and flowengine's over each Authlib app's
    (≥ 1x flows/s, ≤ 1x p99; the CPU has no target: it is what load on the machine disturbs least)."""
    bench = f"web load, {count} worker(s), {label}"
    rate = {side: [run["flows_per_second"] for run in runs[side]] for side in SIDES}
    p99 = {f"{side}, p99": [run["p99_ms"] for run in runs[side]] for side in SIDES}
    rows = [Row(bench, f"{side}: flows/s", stat(rate[side]), "/s") for side in SIDES]
    rows += [Row(bench, f"{side}: flow p99 latency", stat(p99[f"{side}, p99"]), "ms") for side in SIDES]
    rows += [
        Row(bench, f"{side}: worker CPU per completed flow", stat(cpu), "ms")
        for side in SIDES
        if (cpu := [run["worker_cpu_ms"] for run in runs[side] if run.get("worker_cpu_ms") is not None])
    ]
    rows += [
        Row(bench, f"{side}: failed flows (left out above)", stat([run["failed"] for run in runs[side]]), "")
        for side in SIDES
        if any(run["failed"] for run in runs[side])
    ]
    for baseline in (AUTHLIB_SIDE, AUTHLIB_TLS):
        rows.append(ratio_of(bench, rate, FLOWENGINE, baseline, 1.0, higher_is_better=True))
        slowest = (f"{FLOWENGINE}, p99", f"{baseline}, p99")
        rows.append(ratio_of(bench, p99, *slowest, 1.0, higher_is_better=False))
    return rows


def run(
    quick: bool,
    worker_counts: Sequence[int] = (1, 2),
    browsers: int | None = None,
    flows: int | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    """Both sides for each worker count; the runs and the rows."""
    browsers = browsers or (8 if quick else 50)
    flows = flows or (40 if quick else 300)
    rounds = 1 if quick else 2
    result: dict[str, Any] = {"browsers": browsers, "flows": flows, "rounds": rounds, "runs": {}, "rows": []}
    with tempfile.TemporaryDirectory(prefix="fe-web-load-") as tmp:
        sandbox = Process(SANDBOX, r"sandbox on (http://\S+)", {})
        try:
            for count in worker_counts:
                (Path(tmp) / str(count)).mkdir(exist_ok=True)
                where = Path(tmp) / str(count)
                url, label = (store, urlsplit_scheme(store)) if store else _default_store(where)
                try:
                    runs = measure(count, sandbox.url, url, browsers, flows, rounds)
                finally:
                    if not store:
                        _cleanup_store(url)
                result["runs"][f"{count} worker(s), {label}"] = runs
                result["rows"] += rows_of(count, label, runs)
        finally:
            sandbox.stop()
    return result


def urlsplit_scheme(url: str) -> str:
    """The scheme of a store URL: what the report names (a URL may hold a password)."""
    return url.split(":", 1)[0]


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run, print the table (and the JSON)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.web_load", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 browsers, 40 flows, one round")
    parser.add_argument("--browsers", type=int, help="concurrent browsers (default 50)")
    parser.add_argument("--flows", type=int, help="flows per run (default 300)")
    parser.add_argument(
        "--workers", default="1,2", help="worker counts to run, comma-separated (default 1,2)"
    )
    parser.add_argument("--store", help="store URL the workers share (default: Redis if up, else SQLite)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    options = parser.parse_args(argv)
    counts = [int(n) for n in options.workers.split(",")]
    result = run(options.quick, counts, options.browsers, options.flows, options.store)
    print(
        f"web frontend load: {result['browsers']} concurrent browsers, {result['flows']} flows per run, "
        f"{result['rounds']} round(s) per side, podio spec, sandbox; {os.cpu_count()} CPUs shared by the "
        "load, the sandbox and the workers\n"
    )
    print_rows(result["rows"])
    if options.json:
        result["rows"] = [row.as_dict() for row in result["rows"]]
        options.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
