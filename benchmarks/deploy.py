"""Deployments compared: one process on SQLite, two web workers on Redis or PostgreSQL, a Celery fleet.

The figures of docs/deploy.md. Against the sandbox in a process of its own
(``flowengine sandbox serve``, apps registered over HTTP, rate limits off), each
deployment refreshes the same number of app tokens and runs logins:

- ``sqlite 1 process``: one process, one AsyncEngine, the CLI's default store;
- ``redis 2 processes`` / ``postgres 2 processes``: two worker processes sharing
  the store, each refreshing half the tokens while running half the logins;
  then a race: both asked to refresh *every* token at once (what two web
  workers do when a burst of requests finds the same tokens expiring), where
  the store's lease lets one send per token;
- ``celery fleet``: two Celery workers (8 threads each, RabbitMQ, PostgreSQL),
  fed by ``flowengine batch refresh --via celery``: from the command to the last
  token stored.

Each row: operations per second, and how many requests the sandbox received
with each refresh token (1 everywhere: no refresh token was ever sent twice).
Run: ``python -m benchmarks.deploy [--quick]`` (needs PostgreSQL, Redis and
RabbitMQ, as the test suite does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["run"]

FLOWENGINE = [sys.executable, "-c", "from flowengine.cli import main; main()"]
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
FIRST_APP = 3000


@contextmanager
def _sandbox() -> Iterator[str]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and command
        [*FLOWENGINE, "sandbox", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.split("Podio sandbox on ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(timeout=20)


async def _seed(sandbox: str, store: str, count: int) -> list[str]:
    """``count`` app tokens in ``store`` (one app each); their keys."""
    import flowengine as fe

    apps = {str(n): f"app-token-{n}" for n in range(FIRST_APP, FIRST_APP + count)}
    async with httpx.AsyncClient(trust_env=False) as http:
        (await http.post(f"{sandbox}/_sandbox/apps", json={"apps": apps})).raise_for_status()
    spec = fe.load_spec("podio-app")
    with fe.open_sandbox(spec, sandbox) as box:
        client, endpoints = box.client, dict(box.endpoints)
    gate = asyncio.Semaphore(32)
    async with fe.AsyncEngine(spec, client=client, store=store, endpoints=endpoints) as engine:

        async def grant(app_id: str, app_token: str) -> str:
            async with gate:
                return (await engine.grant("app", {"app_id": app_id, "app_token": app_token})).key

        return list(await asyncio.gather(*(grant(a, t) for a, t in apps.items())))


async def _refresh_all(sandbox: str, store: str, keys: Sequence[str], concurrency: int) -> float:
    """Refresh every key through one engine; the seconds it took."""
    import flowengine as fe

    spec = fe.load_spec("podio-app")
    with fe.open_sandbox(spec, sandbox) as box:
        client, endpoints = box.client, dict(box.endpoints)
    gate = asyncio.Semaphore(concurrency)
    async with fe.AsyncEngine(spec, client=client, store=store, endpoints=endpoints) as engine:
        tokens = {key: await engine.get_token(key) for key in keys}

        async def one(key: str) -> None:
            async with gate:
                await engine.refresh(tokens[key] or key)  # the token as this worker saw it

        started = time.perf_counter()
        await asyncio.gather(*(one(key) for key in keys))
        return time.perf_counter() - started


async def _approve(http: httpx.AsyncClient, authorization_url: str) -> str:
    """The person approves on the consent page: the callback URL the sandbox redirects to."""
    from urllib.parse import parse_qsl, urlsplit

    form = dict(parse_qsl(urlsplit(authorization_url).query)) | {"decision": "grant"}
    answer = await http.post(authorization_url.split("?", 1)[0], data=form)
    return answer.headers["location"]


async def _logins(sandbox: str, store: str, count: int, concurrency: int) -> float:
    """``count`` logins (start, the person approves, callback and exchange); the seconds they took."""
    import flowengine as fe

    spec = fe.load_spec("podio")
    with fe.open_sandbox(spec, sandbox) as box:
        client, endpoints = box.client, dict(box.endpoints)
    gate = asyncio.Semaphore(concurrency)
    async with (
        fe.AsyncEngine(spec, client=client, store=store, endpoints=endpoints) as engine,
        httpx.AsyncClient(trust_env=False) as person,
    ):

        async def one() -> None:
            async with gate:
                flow = await engine.start()
                done = await engine.callback(await _approve(person, flow.authorization_url or ""))
                assert done.outcome == "granted", done.error

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return time.perf_counter() - started


def _requests_per_token(sandbox: str) -> list[int]:
    records = httpx.get(f"{sandbox}/_sandbox/token-requests", timeout=60, trust_env=False).json()
    counts = Counter(r["fields"]["refresh_token"] for r in records if r["grant_type"] == "refresh_token")
    return sorted(set(counts.values()))


async def _work(sandbox: str, store: str, keys: list[str], logins: int, concurrency: int) -> dict[str, float]:
    """Refresh every key while ``logins`` logins run alongside; the seconds each took."""
    refresh, login = await asyncio.gather(
        _refresh_all(sandbox, store, keys, concurrency), _logins(sandbox, store, logins, concurrency // 2)
    )
    return {"refresh": refresh, "logins": login}


def _children(store: str, sandbox: str, shares: list[list[str]], logins: int) -> dict[str, float]:
    """One worker process per share of keys, each refreshing its share while running its logins."""
    with tempfile.TemporaryDirectory() as folder:
        argv = [sys.executable, "-m", "benchmarks.deploy", "--child", store, sandbox]
        children = []
        for n, share in enumerate(shares):
            keys_file = Path(folder) / f"keys-{n}.json"
            keys_file.write_text(json.dumps(share))
            command = [*argv, str(keys_file), str(logins // len(shares))]
            children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))  # noqa: S603
        times = []
        for child in children:
            out, _ = child.communicate(timeout=600)
            assert child.returncode == 0, out
            times.append(json.loads(out.strip().splitlines()[-1]))
    return {what: max(t[what] for t in times) for what in ("refresh", "logins")}


def _child(store: str, sandbox: str, keys_file: str, logins: int) -> None:
    keys = json.loads(Path(keys_file).read_text())
    print(json.dumps(asyncio.run(_work(sandbox, store, keys, logins, 16))))


def _scenario(name: str, store: str, count: int, logins: int, processes: int) -> dict[str, Any]:
    """Refreshes and logins per second; with several processes, also a race over every token."""
    with _sandbox() as sandbox:
        keys = asyncio.run(_seed(sandbox, store, count))
        row: dict[str, Any] = {"deployment": name, "tokens": count, "logins": logins}
        if processes == 1:
            took = asyncio.run(_work(sandbox, store, keys, logins, 32))
        else:
            took = _children(store, sandbox, [keys[n::processes] for n in range(processes)], logins)
            race = _children(store, sandbox, [keys] * processes, 0)
            row["race_s"] = round(race["refresh"], 2)
        row |= {
            "refreshes_per_s": round(count / took["refresh"]),
            "logins_per_s": round(logins / took["logins"]),
            "requests_per_refresh_token": _requests_per_token(sandbox),
            "seconds": round(max(took.values()), 2),
        }
    return row


def _rabbitmqctl(*args: str, check: bool = True) -> None:
    command = [shutil.which("rabbitmqctl") or "rabbitmqctl", "-q", *args]
    subprocess.run(command, check=check, capture_output=True, timeout=60)  # noqa: S603 - fixed arguments


@contextmanager
def _vhost() -> Iterator[str]:
    name = f"fe-bench-{uuid.uuid4().hex[:8]}"
    if shutil.which("rabbitmqctl") is None:
        yield "amqp://guest:guest@127.0.0.1:5672//"
        return
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        _rabbitmqctl("delete_vhost", name, check=False)


async def _fingerprints(store: str) -> dict[str, str]:
    import flowengine as fe

    opened = fe.open_store(store)
    try:
        return {token.key: token.fingerprint for token in await opened.list_tokens()}
    finally:
        await opened.aclose()


def _start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A Celery worker of the fleet, once it says it is ready (its log goes to ``log``)."""
    argv = [sys.executable, "-m", "celery", "-A", "flowengine_celery.app", "worker", "-P", "threads",
            "-c", "8", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-Q", env["FLOWENGINE_CELERY_QUEUE"], "-l", "INFO"]  # fmt: skip
    with log.open("w") as errors:
        worker = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)  # noqa: S603
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return worker


def _fleet(store: str, count: int) -> dict[str, Any]:
    """Two Celery workers refresh ``count`` tokens queued by ``batch refresh --via celery``."""
    with _sandbox() as sandbox, _vhost() as broker, tempfile.TemporaryDirectory() as folder:
        asyncio.run(_seed(sandbox, store, count))
        before = asyncio.run(_fingerprints(store))
        env = {**os.environ, "FLOWENGINE_STORE": store, "FLOWENGINE_CELERY_BROKER": broker,
               "FLOWENGINE_CELERY_SPECS": "podio-app", "FLOWENGINE_CELERY_SANDBOX": sandbox,
               "FLOWENGINE_CELERY_QUEUE": f"fe-bench-{uuid.uuid4().hex[:8]}"}  # fmt: skip
        workers = [_start_worker(f"w{n}", env, Path(folder) / f"w{n}.log") for n in (1, 2)]
        try:
            started = time.perf_counter()
            queued = subprocess.run(  # noqa: S603 - our own interpreter and command
                [*FLOWENGINE, "batch", "refresh", "--all", "--via", "celery", "--store", store],
                env=env, capture_output=True, text=True, timeout=300, check=True,
            )  # fmt: skip
            enqueue = time.perf_counter() - started
            while sum(fp != before[k] for k, fp in asyncio.run(_fingerprints(store)).items()) < count:
                if time.perf_counter() - started > 600:
                    raise RuntimeError("the fleet did not refresh every token within 10 minutes")
                time.sleep(0.5)
            took = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
        per_token = _requests_per_token(sandbox)
    return {
        "deployment": "celery fleet: 2 workers x 8 threads, RabbitMQ, postgres",
        "tokens": count,
        "refreshes_per_s": round(count / took),
        "enqueue_s": round(enqueue, 2),
        "requests_per_refresh_token": per_token,
        "seconds": round(took, 2),
        "said": queued.stderr.strip(),
    }


def _schema_url(base: str, kind: str) -> str:
    tag = uuid.uuid4().hex[:10]
    return f"{base}?schema=fe_deploy_{tag}" if kind == "postgres" else f"{base}?prefix=fe-deploy-{tag}:"


def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        import psycopg

        schema = url.split("schema=", 1)[1]
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # a name this module made
    elif url.startswith("redis"):
        import redis

        prefix = url.split("prefix=", 1)[1]
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every deployment; return the rows (also printed as a Markdown table)."""
    count, logins = (200, 40) if quick else (2000, 400)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(_scenario("sqlite, 1 process", f"sqlite:///{folder}/tokens.db", count, logins, 1))
    for kind, base in (("redis", REDIS), ("postgres", POSTGRES)):
        url = _schema_url(base, kind)
        try:
            rows.append(_scenario(f"{kind}, 2 processes", url, count, logins, 2))
        finally:
            _drop(url)
    url = _schema_url(POSTGRES, "postgres")
    try:
        rows.append(_fleet(url, count))
    finally:
        _drop(url)
    print("| deployment | tokens | refreshes/s | logins/s | race: every process refreshes every token "
          "| requests per refresh token |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        logins = row.get("logins_per_s", "")
        race = f"{row['race_s']} s" if "race_s" in row else ""
        print(f"| {row['deployment']} | {row['tokens']:,} | {row['refreshes_per_s']:,} | {logins} | {race} | "
              f"{row['requests_per_refresh_token']} |")  # fmt: skip
    return {"rows": rows}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deploy", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 tokens and 40 logins instead of 2,000 and 400"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument(
        "--child", nargs=4, metavar=("STORE", "SANDBOX", "KEYS", "LOGINS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        store, sandbox, keys_file, logins = args.child
        _child(store, sandbox, keys_file, int(logins))
        return
    result = run(quick=args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
