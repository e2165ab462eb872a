"""SECURITY.md 34: no timing windows, only injectable clocks.

The suite must pass three times in a row while another full run loads the
machine. A test that sleeps and hopes, races a 50 ms lease or counts calls per
half second passes or fails with the load; these checks keep such tests out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flowengine as fe
import pytest

from flowengine_memory import MemoryStore
from flowengine_sqlite import SQLiteStore
from tests.support.clock import FakeClock

TESTS = Path(__file__).resolve().parents[1]

#: Every test sleep for a time that is not a fake clock's, and why it is not a timing window.
ALLOWED_SLEEPS = {
    ("support/terminal.py", "time.sleep(0.05)"): "tmux has no event for new text: polled, bounded at 20 s",
    ("security/test_crash.py", "asyncio.sleep(random.Random(os.getpid()).uniform(0.005, 0.05))"): (
        "kills a worker at a random moment: every moment must leave declared states"
    ),
    ("security/worker.py", "asyncio.sleep(0.01)"): "polls its own tasks until each froze: no deadline",
    ("security/test_outage_proof.py", "super().sleep(seconds)"): (
        "a FakeClock's own sleep: it moves fake time on, it does not wait"
    ),
    ("fleet/services.py", "asyncio.sleep(every)"): (
        "polls what Celery workers in other processes have stored: no event crosses; bounded at 60 s"
    ),
    ("web/test_host_hooks.py", "asyncio.sleep(0.01)"): (
        "a slow host hook; the claim (it runs once) holds however long it takes"
    ),
    ("batch/test_resume.py", "asyncio.sleep(0.01)"): (
        "polls the sandbox's record of answers (no event crosses its thread) until a rotated answer"
        " is held back, whenever that comes: bounded at 60 s"
    ),
    ("plugins/test_transports.py", "asyncio.sleep(0.2)"): (
        "idles past a 0.05 s keep-alive expiry (a loaded machine only idles longer), or within an"
        " hour's; the pools time idleness by their own monotonic clocks, which cannot be injected"
    ),
}


def _sleeps() -> set[tuple[str, str]]:
    """(file, call) for every ``*.sleep(x)`` in the test suite with ``x`` not 0 and not on a fake clock."""
    found = set()
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "sleep" or ast.unparse(node.func.value) == "clock":
                continue
            if node.args and ast.unparse(node.args[0]) in ("0", "0.0"):
                continue  # one turn of the event loop, not a wait for time to pass
            found.add((path.relative_to(TESTS).as_posix(), ast.unparse(node)))
    return found


@pytest.mark.slow
def test_sec34_no_test_sleeps_and_hopes() -> None:
    unexplained = _sleeps() - set(ALLOWED_SLEEPS)
    assert not unexplained, (
        f"tests that wait for time to pass (wait on an event, or use tests/support/clock.py): {unexplained}"
    )
    assert set(ALLOWED_SLEEPS) <= _sleeps(), "an allowed sleep is gone: take it off the list"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_sec34_a_lease_runs_out_on_the_store_clock_with_no_real_waiting(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    store: fe.Store = (
        MemoryStore(clock=clock.now)
        if kind == "memory"
        else SQLiteStore.from_url(f"sqlite://{tmp_path / 'fe.db'}", clock=clock.now)
    )
    lease = await store.acquire("refresh:hour", 3600)
    assert lease is not None and lease.expires_at == clock.now() + 3600
    await clock.sleep(3599.5)  # an hour on the store's clock, none on the wall's
    assert await store.acquire("refresh:hour", 3600) is None
    renewed = await store.renew(lease, 10)
    assert renewed is not None and renewed.expires_at == clock.now() + 10
    await clock.sleep(10)
    assert await store.renew(renewed, 10) is None
    assert await store.acquire("refresh:hour", 3600) is not None
    await store.aclose()
