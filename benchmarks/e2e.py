"""2. End to end over loopback: whole flows per second against a token endpoint, beside plain clients.

Two servers, each in a process of its own: the sandbox (uvicorn + Starlette,
``/oauth/token/v2``) and a minimal raw asyncio server that answers every
request with a canned token response (``benchmarks._rawserver``), to tell the
server's cost from the client's. Against each, at concurrency 1 and 50 (tasks
sharing one client or one engine):

- ``httpx.AsyncClient``: a shared client posting the same JSON token request
  Podio's spec makes and reading its JSON answer (the baseline of the targets);
- ``aiohttp.ClientSession``: the same with aiohttp, for reference;
- ``flowengine (aiohttp)`` and ``flowengine (httpx)``: whole flows on the memory
  store, ``start`` -> ``callback`` -> exchange over the wire, per transport;
- ``AiohttpTransport alone``: the default transport's ``send`` with the token
  request the engine builds (JSON, its headers), no engine: what the transport
  costs beside ``aiohttp.ClientSession``, and so what of the gap is the engine's;
- ``authlib`` (full run only): a shared ``AsyncOAuth2Client`` fetching the token
  (form-encoded, so from the sandbox's ``/oauth/token``).

The sandbox needs real codes: before each side's timed run, as many codes as it
will use are minted through the sandbox's authorization endpoint (consent
``approve``), outside the timing; the sandbox's rate limit is off. A code is bound to the client and redirect
URI, not to ``state``, so a flow started afterwards can carry one. The raw
server takes any code.

Targets, as ratios to ``aiohttp.ClientSession`` (the floor of the default
transport) taken round by round: ``flowengine (aiohttp)`` ≥ 0.8x against the
sandbox at concurrency 1 and 50, ≥ 0.6x (c=1) and ≥ 0.7x (c=50) against the raw
server. ``flowengine (httpx)`` is shown beside ``httpx.AsyncClient``, and
``AiohttpTransport alone`` beside ``aiohttp.ClientSession``, without a target.
Run alone: ``python -m benchmarks.e2e [--quick]``.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from benchmarks._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    MemoryTransport,
    Row,
    interleaved,
    ratio_of,
    run_alone,
    server_process,
    stat,
)

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = (
    "from flowengine_sandbox.server import serve_forever\n"
    "from flowengine_sandbox.settings import SandboxSettings\n"
    "serve_forever('127.0.0.1', 0, SandboxSettings(consent='approve', rate_limit=None))\n"
)
RAW = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom benchmarks._rawserver import main\nmain()\n"

#: How long the servers may live: a full run on a loaded machine takes longer than the default 15 min.
LIFETIME = 3600.0
Work = Callable[[int], Awaitable[None]]
#: flowengine (aiohttp) / aiohttp.ClientSession, at least: by server and concurrency.
TARGETS = {("sandbox", 1): 0.8, ("sandbox", 50): 0.8, ("raw server", 1): 0.6, ("raw server", 50): 0.7}


async def _drive(flows: int, concurrency: int, work: Work) -> float:
    """``flows`` calls of ``work`` spread over ``concurrency`` tasks; flows per second (wall)."""
    indexes = iter(range(flows))

    async def worker() -> None:
        for index in indexes:
            await work(index)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return flows / (time.perf_counter() - began)


async def _mint(url: str, count: int, *, real: bool) -> list[str]:
    """``count`` fresh codes from the sandbox (consent ``approve``), or dummies for the raw server."""
    if not real:
        return [f"code-{index}" for index in range(count)]
    import httpx

    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s"}
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(trust_env=False) as http:

        async def one() -> str:
            async with gate:
                answer = await http.get(f"{url}/oauth/authorize", params=params)
            return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]

        return list(await asyncio.gather(*(one() for _ in range(count))))


def _token_fields(code: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "client_secret": CLIENT_SECRET,
        "code": code,
    }


async def _httpx_side(url: str, codes: list[str], concurrency: int) -> float:
    import httpx

    async with httpx.AsyncClient(trust_env=False) as http:

        async def work(index: int) -> None:
            answer = await http.post(
                f"{url}/oauth/token/v2",
                json=_token_fields(codes[index]),
                headers={"accept": "application/json"},
            )
            if answer.status_code != 200 or "access_token" not in answer.json():
                raise RuntimeError(f"httpx: the token endpoint answered {answer.status_code}")

        return await _drive(len(codes), concurrency, work)


async def _aiohttp_side(url: str, codes: list[str], concurrency: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as http:

        async def work(index: int) -> None:
            async with http.post(
                f"{url}/oauth/token/v2",
                json=_token_fields(codes[index]),
                headers={"accept": "application/json"},
            ) as answer:
                if answer.status != 200 or "access_token" not in await answer.json():
                    raise RuntimeError(f"aiohttp: the token endpoint answered {answer.status}")

        return await _drive(len(codes), concurrency, work)


async def _flowengine_side(url: str, codes: list[str], concurrency: int, transport_name: str) -> float:
    import flowengine as fe

    transport: Any
    if transport_name == "aiohttp":
        from flowengine_aiohttp import AiohttpTransport

        transport = AiohttpTransport()
    else:
        from flowengine_httpx import HttpxTransport

        transport = HttpxTransport()
    spec = fe.load_spec("podio")
    endpoints = {name: url + urlsplit(endpoint).path for name, endpoint in spec.endpoints.items()}
    client = fe.Client(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT_URI, registered_domain="127.0.0.1")
    async with fe.AsyncEngine(
        spec, client=client, endpoints=endpoints, transport=transport, store="memory://"
    ) as engine:

        async def work(index: int) -> None:
            flow = await engine.start()
            assert flow.authorization_url is not None
            state = flow.authorization_url.rpartition("state=")[2]
            done = await engine.callback(f"{REDIRECT_URI}?code={codes[index]}&state={state}")
            if done.state != "exchanged":
                raise RuntimeError(
                    f"flowengine ({transport_name}): the flow ended {done.state}: {done.error}"
                )

        return await _drive(len(codes), concurrency, work)


async def _transport_side(url: str, codes: list[str], concurrency: int) -> float:
    import json

    import flowengine as fe

    from flowengine_aiohttp import AiohttpTransport

    transport = AiohttpTransport()
    headers = {"content-type": "application/json", "accept": "application/json", "user-agent": "flowengine"}
    try:

        async def work(index: int) -> None:
            body = json.dumps(_token_fields(codes[index])).encode()
            answer = await transport.send(fe.HttpRequest("POST", f"{url}/oauth/token/v2", headers, body))
            if answer.status != 200 or "access_token" not in json.loads(answer.body):
                raise RuntimeError(f"AiohttpTransport: the token endpoint answered {answer.status}")

        return await _drive(len(codes), concurrency, work)
    finally:
        await transport.aclose()


async def _authlib_side(url: str, codes: list[str], concurrency: int) -> float:
    # Authlib announces a move to "httpx2" with a filter of its own set to "always": record, don't print.
    with warnings.catch_warnings(record=True):
        from authlib.integrations.httpx_client import AsyncOAuth2Client

    async with AsyncOAuth2Client(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT_URI) as client:

        async def work(index: int) -> None:
            token = await client.fetch_token(f"{url}/oauth/token", code=codes[index])
            if "access_token" not in token:
                raise RuntimeError("authlib: no token")

        return await _drive(len(codes), concurrency, work)


SIDES: dict[str, Callable[[str, list[str], int], Awaitable[float]]] = {
    "httpx.AsyncClient": _httpx_side,
    "aiohttp.ClientSession": _aiohttp_side,
    "flowengine (aiohttp)": lambda url, codes, c: _flowengine_side(url, codes, c, "aiohttp"),
    "flowengine (httpx)": lambda url, codes, c: _flowengine_side(url, codes, c, "httpx"),
    "AiohttpTransport alone": _transport_side,
    "authlib AsyncOAuth2Client": _authlib_side,
}


def _side(url: str, name: str, flows: int, concurrency: int, *, mint: bool) -> Callable[[], float]:
    def one_round() -> float:
        async def measured() -> float:
            codes = await _mint(url, flows, real=mint)
            return await SIDES[name](url, codes, concurrency)

        return asyncio.run(measured())

    return one_round


def default_transport() -> str:
    """The class name of the transport ``AsyncEngine`` opens when given none."""
    import flowengine as fe
    from flowengine import _plugins as plugins

    return type(plugins.open_transport(fe.TransportConfig())).__name__


def _ratio_rows(bench: str, figures: dict[str, list[float]], limit: float) -> list[Row]:
    """Each engine (and the transport alone) beside its client, round by round; the target on aiohttp's."""
    return [
        ratio_of(bench, figures, "flowengine (aiohttp)", "aiohttp.ClientSession", limit),
        ratio_of(bench, figures, "AiohttpTransport alone", "aiohttp.ClientSession"),
        ratio_of(bench, figures, "flowengine (httpx)", "httpx.AsyncClient"),
    ]


def warm_up() -> None:
    """Import, once and untimed, what a side would otherwise import inside its first timed round.

    A process's first flow imports what the engine's observers load on first use (the
    OpenTelemetry API, with the otel plugin installed: a tenth of a second or more),
    and each client library is imported on first use: in a short run that would be a
    large part of whichever side happens to go first.
    """
    import aiohttp  # noqa: F401 - imported for its cost, untimed
    import flowengine as fe
    import httpx  # noqa: F401

    async def one_flow() -> None:
        client = fe.Client(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT_URI)
        async with fe.AsyncEngine("podio", client=client, transport=MemoryTransport()) as engine:
            flow = await engine.start()
            assert flow.authorization_url is not None
            state = flow.authorization_url.rpartition("state=")[2]
            await engine.callback(f"{REDIRECT_URI}?code=warm-up&state={state}")

    asyncio.run(one_flow())


def run(quick: bool) -> dict[str, Any]:
    """Both servers, concurrency 1 and 50, every side interleaved; rows and target ratios."""
    rounds = 2 if quick else 5
    warm_up()
    sides = [name for name in SIDES if not (quick and name.startswith("authlib"))]
    results: dict[str, Any] = {"rounds": rounds, "default_transport": default_transport(), "servers": {}}
    rows: list[Row] = []
    with (
        server_process(SANDBOX, r"sandbox on (http://\S+)", lifetime=LIFETIME) as sandbox,
        server_process(RAW, r"raw server on (http://\S+)", lifetime=LIFETIME) as raw,
    ):
        for label, url in (("sandbox", sandbox), ("raw server", raw)):
            for concurrency in (1, 50):
                flows = (60 if quick else 600) * (1 if concurrency == 1 else 3)
                figures = interleaved(
                    rounds,
                    {name: _side(url, name, flows, concurrency, mint=url == sandbox) for name in sides},
                )
                results["servers"].setdefault(label, {})[f"c{concurrency}"] = figures
                bench = f"e2e {label} c{concurrency}"
                rows += [Row(bench, f"{name}: flows/s", stat(v), "flows/s") for name, v in figures.items()]
                rows += _ratio_rows(bench, figures, TARGETS[label, concurrency])
    results["rows"] = rows
    return results


if __name__ == "__main__":
    run_alone(run, __doc__)
