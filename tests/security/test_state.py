"""SECURITY.md 1: ``state`` is random, fresh per flow, single use, expiring, compared in constant time."""

from __future__ import annotations

import ast
import base64
import math
from collections import Counter
from pathlib import Path

import flowengine as fe
import flowengine._security
import pytest
from flowengine.testing import FakeClock

from tests.conftest import SandboxFixture
from tests.security.helpers import (
    ScriptedTransport,
    assert_nothing_sent,
    podio_variant,
    query_of,
)


def _bits(value: str) -> int:
    return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))) * 8


@pytest.mark.slow
async def test_sec1_ten_thousand_flows_get_ten_thousand_states_of_at_least_128_bits() -> None:
    engine = fe.AsyncEngine(
        "podio",
        client=fe.Client("cid", "secret", "https://app.example.com/cb"),
        transport=ScriptedTransport(),
    )
    states = []
    for _ in range(10_000):
        flow = await engine.start()
        states.append(query_of(flow.authorization_url or "")["state"])
    assert len(set(states)) == 10_000
    assert min(_bits(s) for s in states) >= 128
    # A smoke test of the randomness itself: the characters spread over all 64 of base64url.
    counts = Counter("".join(states))
    assert len(counts) == 64
    entropy = -sum(n / counts.total() * math.log2(n / counts.total()) for n in counts.values())
    assert entropy > 5.99  # bits per character; 6 is perfect


async def test_sec1_only_a_digest_of_state_is_stored(engine: fe.AsyncEngine) -> None:
    flow = await engine.start()
    state = query_of(flow.authorization_url or "")["state"]
    stored = await engine.get(flow.id)
    assert stored is not None
    assert stored.state_hash == fe.digest(state) != state
    assert state not in repr(stored) and stored.authorization_url is None


async def test_sec1_state_is_single_use(engine: fe.AsyncEngine, sandbox: SandboxFixture) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)
    assert (await engine.callback(callback)).state == "exchanged"
    with pytest.raises(fe.CallbackError) as caught:
        await engine.callback({"state": query_of(callback)["state"], "code": "another-code"})
    assert caught.value.code == "state_used"
    assert len(sandbox.token_requests()) == 1


@pytest.mark.parametrize("ttl", [None, 30])
async def test_sec1_state_expires_after_the_specs_ttl_ten_minutes_by_default(
    sandbox: SandboxFixture, ttl: int | None
) -> None:
    spec = fe.load_spec("podio") if ttl is None else podio_variant(lambda d: d["machine"].update(ttl=ttl))
    expected = 600 if ttl is None else ttl
    clock = FakeClock()
    async with fe.AsyncEngine(
        spec, client=sandbox.client, endpoints=sandbox.endpoints, clock=clock
    ) as engine:
        flow = await engine.start()
        assert flow.expires_at - flow.created_at == expected
        callback = await sandbox.consent(flow.authorization_url)
        clock.advance(expected)
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback)
        assert caught.value.code == "flow_expired"
        stored = await engine.get(flow.id)
    assert stored is not None and stored.state == "failed"
    assert_nothing_sent(sandbox)


async def test_sec1_state_is_compared_by_the_engine_not_trusted_from_the_store(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    """A store that answers a lookup with another flow (a bug, a collision) does not get it finished."""

    class WrongFlowStore:
        def __init__(self, inner: fe.Store) -> None:
            self.inner = inner

        async def get_by_state(self, state_hash: str) -> fe.Flow | None:
            flows = await self.inner.list_flows()
            return next((f for f in flows if f.state_hash != state_hash), None)

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    store = WrongFlowStore(fe.open_store("memory://"))
    async with fe.AsyncEngine(
        podio_spec,
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        store=store,  # type: ignore[arg-type]
    ) as engine:
        await engine.start()  # the flow the store will wrongly hand back
        flow = await engine.start()
        callback = await sandbox.consent(flow.authorization_url)
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback)
    assert caught.value.code == "state_unknown"
    assert_nothing_sent(sandbox)


def test_sec1_digests_are_compared_in_constant_time_everywhere() -> None:
    """``digests_equal`` is hmac.compare_digest, and no module compares a state or session digest with ==."""
    package = Path(flowengine.__file__).parent
    security = ast.parse((package / "_security.py").read_text(encoding="utf-8"))
    function = next(
        n for n in ast.walk(security) if isinstance(n, ast.FunctionDef) and n.name == "digests_equal"
    )
    calls = {ast.unparse(n.func) for n in ast.walk(function) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls
    plain = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                text = ast.unparse(node)
                if any(name in text for name in ("state_hash", "session_hash", "nonce_hash")):
                    plain.append(f"{path.name}: {text}")
    assert not plain, plain
