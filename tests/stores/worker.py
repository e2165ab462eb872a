"""A worker process for the cross-process guarantees: ``python -m tests.stores.worker STORE SANDBOX CMD ...``.

Commands:
  start N FILE        start N podio flows, let the sandbox approve them, write the callback URLs to FILE
  deliver FILE [C]    deliver every callback URL of FILE, C at a time (default 50); print outcome counts
  refresh KEY N       read the token KEY, print "ready", and on a line from stdin refresh it N times
                      at once; print the distinct fingerprints
  hang FILE           deliver the callbacks, but freeze after each token response (to be SIGKILLed)
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from pathlib import Path

import flowengine as fe

from flowengine_httpx import HttpxTransport
from flowengine_sandbox.plugin import PodioSandbox


class FreezingTransport(HttpxTransport):
    """Sends for real, then never hands the answer back: a worker dying mid-exchange."""

    async def send(self, request: fe.HttpRequest) -> fe.HttpResponse:
        await super().send(request)
        print("sent", flush=True)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def main(store_url: str, sandbox_url: str, command: str, *args: str) -> None:
    spec = fe.load_spec("podio")
    sandbox = PodioSandbox(spec, sandbox_url)
    transport = FreezingTransport() if command == "hang" else None
    async with fe.AsyncEngine(
        spec,
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        store=store_url,
        transport=transport,
        # A worker that is to die holds short leases, so they free soon after its death; the
        # others hold leases that outlive an exchange however loaded the machine (10 s did not:
        # a slow holder lost its lease, and the next one failed the flow as interrupted). Once
        # the engine renews its leases while it works, both can be short.
        lease_ttl=10.0 if command == "hang" else 60.0,
    ) as engine:
        if command == "start":
            count, target = int(args[0]), Path(args[1])
            urls = []
            for _ in range(count):
                flow = await engine.start()
                assert flow.authorization_url
                urls.append(await sandbox.consent(flow.authorization_url, approve=True))
            target.write_text("\n".join(urls))
        elif command in ("deliver", "hang"):
            urls = Path(args[0]).read_text().split()
            random.shuffle(urls)
            limit = asyncio.Semaphore(int(args[1]) if len(args) > 1 else 50)

            async def deliver(url: str) -> str:
                async with limit:
                    try:
                        return (await engine.callback(url)).state
                    except fe.FlowError as exc:
                        return exc.code

            outcomes = await asyncio.gather(*(deliver(url) for url in urls))
            print(json.dumps(Counter(outcomes)), flush=True)
        elif command == "refresh":
            # Read the expired token, say so, and refresh it on "go": callers that hold the old
            # token get the new one however late they ask (asking by key after another process
            # finished would rightly refresh again: the race would depend on the machine's load).
            key, count = args[0], int(args[1])
            held = await engine.get_token(key)
            assert held is not None
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            tokens = await asyncio.gather(*(engine.refresh(held) for _ in range(count)))
            print(json.dumps(sorted({t.fingerprint for t in tokens})), flush=True)
        else:
            raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
