"""1. Engine cost per flow, no network: flowengine beside Authlib doing the same steps.

A flowengine flow is ``start`` -> ``callback`` (state checked, code recorded)
-> ``exchange`` -> token and flow stored, history kept, on the memory store.
Authlib's is what an app writes with it: ``create_authorization_url``, then
``fetch_token(authorization_response=..., state=...)``, which parses the
callback, checks the state and fetches the token. The figure is CPU time per
flow (``time.process_time``), which a neighbour's load disturbs less than wall
time, measured the two sides interleaved in the same run.

Sides:

- ``flowengine``: the transport answers from memory (the engine's own cost);
- ``flowengine, httpx mock``: the httpx transport over ``httpx.MockTransport``,
  the very mock Authlib's side uses, so that both pay for one httpx request;
- ``authlib, shared client``: one ``AsyncOAuth2Client`` for every flow;
- ``authlib, client per flow``: a new client per flow, as many apps do.

Target: flowengine's CPU per flow ≤ 0.25x Authlib's with a shared client, the
ratio taken round by round.

Run alone: ``python -m benchmarks.engine_cost [--quick]``.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from typing import Any

from benchmarks._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_BODY,
    MemoryTransport,
    Row,
    interleaved,
    ratio_row,
    run_alone,
    stat,
    verdict,
)

__all__ = ["authlib_side", "flowengine_side", "run", "step_side"]

#: The budget of one machine step run by ``transitions``' own trigger (issue 12): within it,
#: flows would move through ``transitions`` itself rather than the table read back from it.
STEP_BUDGET_US = 10.0

REDIRECT = "https://app.example.com/callback"
AUTHORIZE = "https://podio.com/oauth/authorize"
TOKEN_URL = "https://api.podio.com/oauth/token/v2"  # noqa: S105 - a URL, not a secret
WARM_UP = 200
#: flowengine's CPU per flow, at most, as a multiple of Authlib's (shared client).
TARGET = 0.25


def _httpx_mock() -> Any:
    import httpx

    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "application/json"}, stream=httpx.ByteStream(TOKEN_BODY)
        )

    return httpx.MockTransport(answer)


def flowengine_side(flows: int, *, transport: str = "memory") -> Callable[[], float]:
    """CPU µs per flow of flowengine, one round per call; ``transport`` is memory or httpx-mock."""

    def one_round() -> float:
        return asyncio.run(_flowengine_round(flows, transport))

    return one_round


async def _flowengine_round(flows: int, transport_kind: str) -> float:
    import flowengine as fe

    transport: Any
    if transport_kind == "memory":
        transport = MemoryTransport()
    else:
        import httpx

        from flowengine_httpx import HttpxTransport

        transport = HttpxTransport(client=httpx.AsyncClient(transport=_httpx_mock()))
    client = fe.Client(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT)
    async with fe.AsyncEngine("podio", client=client, store="memory://", transport=transport) as engine:

        async def flow(index: int) -> None:
            started = await engine.start(scope="global:all")
            assert started.authorization_url is not None
            state = started.authorization_url.rpartition("state=")[2]
            done = await engine.callback(f"{REDIRECT}?code=code-{index}&state={state}")
            if done.state != "exchanged":
                raise RuntimeError(f"a benchmark flow ended {done.state}: {done.error}")

        for index in range(WARM_UP):
            await flow(index)
        began = time.process_time()
        for index in range(flows):
            await flow(index)
        spent = time.process_time() - began
        if len(await engine.tokens()) != 1:  # one account: every flow replaced the same token
            raise RuntimeError("the flows did not store their token")
    return spent / flows * 1e6


def authlib_side(flows: int, *, shared: bool) -> Callable[[], float]:
    """CPU µs per flow of Authlib's AsyncOAuth2Client over ``httpx.MockTransport``."""

    def one_round() -> float:
        return asyncio.run(_authlib_round(flows, shared))

    return one_round


async def _authlib_round(flows: int, shared: bool) -> float:
    # Authlib announces a move to "httpx2" with a filter of its own set to "always": record, don't print.
    with warnings.catch_warnings(record=True):
        from authlib.integrations.httpx_client import AsyncOAuth2Client

    mock = _httpx_mock()

    def new_client() -> Any:
        return AsyncOAuth2Client(
            CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT, scope="global:all", transport=mock
        )

    one = new_client()

    async def flow(index: int) -> None:
        client = one if shared else new_client()
        _url, state = client.create_authorization_url(AUTHORIZE)
        token = await client.fetch_token(
            TOKEN_URL, authorization_response=f"{REDIRECT}?code=code-{index}&state={state}", state=state
        )
        if not shared:
            await client.aclose()
        if "access_token" not in token:
            raise RuntimeError("Authlib returned no token")

    for index in range(WARM_UP):
        await flow(index)
    began = time.process_time()
    for index in range(flows):
        await flow(index)
    spent = time.process_time() - began
    await one.aclose()
    return spent / flows * 1e6


def step_side(steps: int, *, own_trigger: bool) -> Callable[[], float]:
    """CPU µs per machine step: a ``callback`` on Podio's machine, through the table or ``transitions``.

    Both sides build the same ``TransitionContext`` and run the same guards and actions
    (``tests/core/test_machine_differential.py`` proves they agree); only the walk differs.
    """
    import flowengine as fe
    from flowengine._callbacks import CallbackParams
    from flowengine._machine import compile_flow

    spec = fe.load_spec("podio")
    compiled = compile_flow(spec)
    fire = compiled.fire_with_transitions if own_trigger else compiled.fire
    flow = fe.Flow(
        id="f",
        spec=spec.name,
        state=compiled.initial,
        created_at=0.0,
        expires_at=1e12,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT,
        state_hash="h",
    )
    params = CallbackParams(code="c", state="s")

    def one_round() -> float:
        for _ in range(WARM_UP):
            fire(fe.TransitionContext(spec, flow, "callback", params=params))
        began = time.process_time()
        for _ in range(steps):
            fire(fe.TransitionContext(spec, flow, "callback", params=params))
        return (time.process_time() - began) / steps * 1e6

    return one_round


def _step_rows(quick: bool) -> list[Row]:
    """The per-step cost of the table ``fire`` walks beside ``transitions``' own trigger."""
    steps = 2000 if quick else 20000
    figures = interleaved(
        3 if quick else 7,
        {
            "table": step_side(steps, own_trigger=False),
            "transitions": step_side(steps, own_trigger=True),
        },
    )
    own = stat(figures["transitions"])
    budget = f"≤ {STEP_BUDGET_US:g} µs"
    return [
        Row("machine step", "CompiledFlow.fire (the table): CPU per step", stat(figures["table"]), "µs"),
        Row(
            "machine step",
            "transitions' own trigger on a per-step model: CPU per step",
            own,
            "µs",
            budget,
            verdict(own.median, STEP_BUDGET_US, higher_is_better=False),
        ),
    ]


def run(quick: bool) -> dict[str, Any]:
    """Every side, interleaved round by round; rows with µs per flow and the target ratios."""
    flows = 500 if quick else 5000
    rounds = 3 if quick else 7
    figures = interleaved(
        rounds,
        {
            "flowengine": flowengine_side(flows),
            "flowengine, httpx mock": flowengine_side(flows, transport="httpx-mock"),
            "authlib, shared client": authlib_side(flows, shared=True),
            "authlib, client per flow": authlib_side(max(100, flows // 5), shared=False),
        },
    )
    rows = [Row("engine cost", f"{name}: CPU per flow", stat(v), "µs") for name, v in figures.items()]
    authlib = figures["authlib, shared client"]
    rows.append(
        ratio_row(
            "engine cost",
            "flowengine / authlib (shared), CPU per flow",
            [a / b for a, b in zip(figures["flowengine"], authlib, strict=True)],
            TARGET,
            higher_is_better=False,
        )
    )
    rows.append(
        ratio_row(
            "engine cost",
            "flowengine, httpx mock / authlib (shared): same mock",
            [a / b for a, b in zip(figures["flowengine, httpx mock"], authlib, strict=True)],
            1.0,
            higher_is_better=False,
        )
    )
    rows.extend(_step_rows(quick))
    return {"flows_per_round": flows, "rounds": rounds, "us_per_flow": figures, "rows": rows}


if __name__ == "__main__":
    run_alone(run, __doc__)
