"""What the fleet tests run in processes of their own: the sandbox, Celery workers, and a broker to share.

Every service gets waited on through what it says (a line it prints, an answer
it gives), never through a fixed sleep. Each run gets its own RabbitMQ vhost
(``rabbitmqctl``), or its own Redis key prefix, so runs never see each other's
messages. With ``CI=true`` a missing broker fails the test; elsewhere it skips.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.stores.backend_redis import keys_under, raw_client

RABBITMQ = ("127.0.0.1", 5672)
REDIS_BROKER = "redis://127.0.0.1:6379/0"
FLOWENGINE = [sys.executable, "-c", "from flowengine.cli import main; main()"]


def unavailable(what: str, why: str) -> None:
    """Skip, or under CI fail, a test whose service is missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: {why} (CI=true: the service must be running)")
    pytest.skip(f"{what}: {why}")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbitmq_broker() -> Iterator[tuple[str, dict[str, str]]]:
    """A broker URL on a fresh vhost (or, without rabbitmqctl, a fresh queue on ``/``), and its env."""
    if not _answers(*RABBITMQ):
        unavailable("RabbitMQ", f"nothing answers on {RABBITMQ[0]}:{RABBITMQ[1]}")
    name = f"fe-test-{uuid.uuid4().hex[:12]}"
    if shutil.which("rabbitmqctl") is None:
        yield "amqp://guest:guest@127.0.0.1:5672//", {"FLOWENGINE_CELERY_QUEUE": name}
        return
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}", {"FLOWENGINE_CELERY_QUEUE": "flowengine"}
    finally:
        _rabbitmqctl("delete_vhost", name)


@contextmanager
def redis_broker(visibility_timeout: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The Redis server as a broker, under a fresh key prefix, and its env."""
    if not _answers("127.0.0.1", 6379):
        unavailable("Redis", "nothing answers on 127.0.0.1:6379")
    prefix = f"fe-test-{uuid.uuid4().hex[:12]}:"
    env = {
        "FLOWENGINE_CELERY_BROKER_PREFIX": prefix,
        "FLOWENGINE_CELERY_VISIBILITY_TIMEOUT": visibility_timeout,
    }
    try:
        yield REDIS_BROKER, env
    finally:
        with raw_client() as client:
            keys = keys_under(client, prefix)
            if keys:
                client.delete(*keys)


class Process:
    """A child process whose output lines are read as they come, to wait for one of them."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self.popen = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.log.open("w") as copy:
            for line in self.popen.stdout:
                copy.write(line)
                copy.flush()
                with self._changed:
                    self._lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first line holding ``text``; fails (with the output) if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self._lines if text in line), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._changed.wait(0.1)):
                    output = "".join(self._lines[-40:])
                    raise AssertionError(f"{self.name} never printed {text!r}:\n{output}")
                self._changed.wait(min(left, 1.0))

    def lines(self, text: str) -> list[str]:
        """Every line so far holding ``text``."""
        with self._changed:
            return [line for line in self._lines if text in line]

    def kill(self) -> None:
        """SIGKILL: no goodbye, no acknowledgement, nothing saved."""
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def sandbox_process(tmp_path: Path) -> Iterator[str]:
    """``flowengine sandbox serve`` in a process of its own; its URL."""
    process = Process(
        "sandbox", [*FLOWENGINE, "sandbox", "serve", "--port", "0"], {}, tmp_path / "sandbox.log"
    )
    try:
        line = process.wait_for("Podio sandbox on ")
        yield line.split("Podio sandbox on ", 1)[1].split()[0]
    finally:
        process.stop()


def start_worker(name: str, env: dict[str, str], tmp_path: Path, *, concurrency: int = 8) -> Process:
    """A Celery worker of the fleet (threads pool), once it says it is ready."""
    queue = env.get("FLOWENGINE_CELERY_QUEUE", "flowengine")
    argv = [sys.executable, "-m", "celery", "-A", "flowengine_celery.app", "worker", "-P", "threads",
            "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-l", "INFO", "-Q", queue]  # fmt: skip
    worker = Process(name, argv, env, tmp_path / f"{name}.log")
    worker.wait_for(" ready.", timeout=60)
    return worker


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = 60, every: float = 0.1
) -> float:
    """Check ``condition`` every ``every`` seconds until it holds (another process makes it so).

    Returns the seconds it took; fails naming ``what`` after ``within``.
    """
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not within {within:g}s")
        await asyncio.sleep(every)
    return time.monotonic() - started


class SandboxAdmin:
    """The admin routes of a sandbox in another process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=30, trust_env=False)

    async def post(self, path: str, body: object) -> object:
        answer = await self.http.post(path, json=body)
        answer.raise_for_status()
        return answer.json()

    async def get(self, path: str) -> object:
        answer = await self.http.get(path)
        answer.raise_for_status()
        return answer.json()

    async def aclose(self) -> None:
        await self.http.aclose()
