"""A small fleet end to end: keep_fresh plans, spreads and queues; one worker refreshes each token once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowengine_celery import FleetSettings, create_app
from tests.fleet.fleet import changed_tokens, refreshes_by_token, seed_tokens, worker_env
from tests.fleet.services import SandboxAdmin, rabbitmq_broker, sandbox_process, start_worker, wait_until

TOKENS = 40


@pytest.mark.slow
async def test_keep_fresh_refreshes_every_expiring_token_once(postgres_url: str, tmp_path: Path) -> None:
    with sandbox_process(tmp_path) as sandbox, rabbitmq_broker() as (broker, broker_env):
        admin = SandboxAdmin(sandbox)
        try:
            seeded = await seed_tokens(admin, postgres_url, TOKENS)
            limits = {"FLOWENGINE_CELERY_WINDOW": "9h", "FLOWENGINE_CELERY_CLIENT_RATE_LIMIT": "10/0.5s"}
            env = worker_env(postgres_url, broker, sandbox, tmp_path, **broker_env, **limits)
            worker = start_worker("w1", env, tmp_path)
            try:
                app = create_app(FleetSettings.from_env(env))
                app.send_task("flowengine.keep_fresh", queue=env["FLOWENGINE_CELERY_QUEUE"])
                app.send_task("flowengine.keep_fresh", queue=env["FLOWENGINE_CELERY_QUEUE"])  # a beat twice

                async def all_refreshed() -> bool:
                    return len((await changed_tokens(postgres_url, seeded))[0]) == TOKENS

                await wait_until(all_refreshed, "every token refreshed", within=60)
                await wait_until(lambda: _logged(worker, "keep_fresh: queued", 2), "both plans logged", 10)
                app.close()
            finally:
                worker.stop()
            per_token, statuses = await refreshes_by_token(admin, seeded)
            counters = await admin.get("/_sandbox/counters")
        finally:
            await admin.aclose()
    assert per_token == dict.fromkeys(seeded, 1)
    assert statuses == {200: TOKENS}
    plans = [re.search(r"keep_fresh: queued (\d+), (\d+) already queued", line) for line in
             worker.lines("keep_fresh: queued")]  # fmt: skip
    queued = [(int(m[1]), int(m[2])) for m in plans if m]
    assert len(queued) == 2
    assert sum(q for q, _ in queued) == TOKENS, "each token queued by one of the two plans"
    assert sum(s for _, s in queued) == TOKENS, "and found already queued by the other"
    assert isinstance(counters, dict)
    assert counters["peak"]["client"] <= 10
    assert counters["rejected"] == 0


async def _logged(worker: object, text: str, count: int) -> bool:
    from tests.fleet.services import Process

    assert isinstance(worker, Process)
    return len(worker.lines(text)) >= count
