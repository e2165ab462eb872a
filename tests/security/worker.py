"""A second process for the cross-process checks: ``python -m tests.security.worker STORE SANDBOX CMD ...``.

``WORKER_LEASE_TTL`` (seconds, default 30) is the engine's lease TTL: short for a worker that
is going to be killed, so that its leases free up quickly.

Commands:
  deliver URL...          print "delivering", deliver the callback URLs at once; print the outcomes as JSON
  refresh KEY N           print "ready", wait for a line on stdin, then refresh KEY N times at once;
                          print the fingerprints of what the callers got, as JSON
  crash FILE              start and drive one flow per step boundary of ``crash_points.POINTS``,
                          each frozen at its boundary; print "frozen POINT FLOW_ID" for each and
                          the callback URLs to FILE, then wait to be killed
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import flowengine as fe

from flowengine_sandbox.plugin import PodioSandbox
from tests.security.crash_points import POINTS, FreezingStore, FreezingTransport, frozen_at


async def main(store_url: str, sandbox_url: str, command: str, *args: str) -> None:
    spec = fe.load_spec("podio")
    sandbox = PodioSandbox(spec, sandbox_url)
    store: fe.Store | str = store_url
    transport = None
    if command == "crash":
        store = FreezingStore(fe.open_store(store_url))
        transport = FreezingTransport()
    async with fe.AsyncEngine(
        spec,
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        store=store,
        transport=transport,
        # Short for a worker that is going to be killed, so that its leases free up quickly.
        lease_ttl=float(os.environ.get("WORKER_LEASE_TTL", "30")),
    ) as engine:
        if command == "deliver":
            print("delivering", flush=True)

            async def deliver(url: str) -> str:
                try:
                    return (await engine.callback(url)).state
                except fe.FlowError as exc:
                    return exc.code

            print(json.dumps(await asyncio.gather(*(deliver(url) for url in args))), flush=True)
        elif command == "refresh":
            key, count = args[0], int(args[1])
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            tokens = await asyncio.gather(*(engine.refresh(key) for _ in range(count)))
            print(json.dumps([t.fingerprint for t in tokens]), flush=True)
        elif command == "crash":
            await _crash(engine, sandbox, Path(args[0]))
        else:
            raise SystemExit(f"unknown command {command!r}")


async def _crash(engine: fe.AsyncEngine, sandbox: PodioSandbox, target: Path) -> None:
    """One flow per boundary, each frozen there; the test kills the process once all are."""
    callbacks: list[str] = []

    async def drive(point: str) -> None:
        token = frozen_at.set(point)
        try:
            flow = await engine.start()
            if point == "started":
                await FreezingStore.freeze(point, flow.id)
            callback = await sandbox.consent(flow.authorization_url or "", approve=True)
            callbacks.append(callback)
            await engine.callback(callback)
        finally:
            frozen_at.reset(token)

    tasks = [asyncio.create_task(drive(point)) for point in POINTS]
    while len(FreezingStore.frozen) < len(POINTS):
        done = [t for t in tasks if t.done()]
        for task in done:
            task.result()  # a flow that finished without freezing is a broken test: say why
        await asyncio.sleep(0.01)
    target.write_text("\n".join(callbacks))
    for point, flow_id in FreezingStore.frozen:
        print("frozen", point, flow_id, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
