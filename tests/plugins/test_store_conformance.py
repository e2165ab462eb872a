"""The store contract (DESIGN.md), run against every store URL in STORE_URLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import attrs
import flowengine as fe
import pytest
from flowengine import plugins
from flowengine.security import digest

#: Every store the suite runs against; issue #3 adds sqlite, redis and postgresql.
STORE_URLS = ["memory://"]


@pytest.fixture(params=STORE_URLS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[fe.Store]:
    store = plugins.open_store(request.param)
    yield store
    await store.aclose()


def make_flow(
    n: int = 0, *, spec: str = "podio", state: str = "redirected", expires_at: float = 2_000.0
) -> fe.Flow:
    return fe.Flow(
        id=f"flow-{n}",
        spec=spec,
        state=state,
        created_at=1_000.0 + n,
        expires_at=expires_at,
        client_id="client",
        redirect_uri="https://example.com/cb",
        state_hash=digest(f"state-{n}"),
        code_verifier="verifier",
    )


def make_token(account: int = 1, *, provider: str = "podio", expires_at: float | None = 5_000.0) -> fe.Token:
    return fe.Token(
        provider=provider,
        account=fe.AccountRef("user", account),
        access_token=f"access-{account}",
        token_type="bearer",
        obtained_at=1_000.0,
        expires_at=expires_at,
        refresh_token=f"refresh-{account}",
        extra={"ref": {"type": "user", "id": account}},
    )


async def test_create_get_and_get_by_state(store: fe.Store) -> None:
    flow = make_flow(1)
    await store.create(attrs.evolve(flow, authorization_url="https://x/?state=secret"))
    got = await store.get(flow.id)
    assert got == flow
    assert got is not None and got.authorization_url is None  # never stored
    assert await store.get_by_state(digest("state-1")) == flow
    assert await store.get_by_state(digest("state-2")) is None
    assert await store.get("nope") is None


async def test_create_twice_is_a_conflict(store: fe.Store) -> None:
    await store.create(make_flow(1))
    with pytest.raises(fe.StoreError) as caught:
        await store.create(make_flow(1))
    assert caught.value.code == "store_conflict"


async def test_list_filters_and_orders_oldest_first(store: fe.Store) -> None:
    for n, (spec, state) in enumerate(
        [("podio", "redirected"), ("other", "redirected"), ("podio", "failed")]
    ):
        await store.create(make_flow(n, spec=spec, state=state))
    assert [f.id for f in await store.list_flows()] == ["flow-0", "flow-1", "flow-2"]
    assert [f.id for f in await store.list_flows(spec="podio")] == ["flow-0", "flow-2"]
    assert [f.id for f in await store.list_flows(spec="podio", state="failed")] == ["flow-2"]


async def test_compare_and_set_has_exactly_one_winner(store: fe.Store) -> None:
    flow = make_flow(1)
    await store.create(flow)
    moves = [attrs.evolve(flow, state=f"s{i}", version=2) for i in range(20)]
    results = await asyncio.gather(*(store.compare_and_set(m, 1) for m in moves))
    assert results.count(True) == 1
    stored = await store.get(flow.id)
    assert stored is not None and stored.version == 2
    assert stored.state == moves[results.index(True)].state
    assert await store.compare_and_set(attrs.evolve(flow, version=2), 1) is False
    assert await store.compare_and_set(attrs.evolve(make_flow(9), version=2), 1) is False


async def test_delete_and_purge(store: fe.Store) -> None:
    await store.create(make_flow(1, expires_at=1_500.0))
    await store.create(make_flow(2, expires_at=2_500.0))
    await store.create(make_flow(3, expires_at=3_500.0))
    assert await store.delete("flow-3") is True
    assert await store.delete("flow-3") is False
    assert await store.get_by_state(digest("state-3")) is None
    assert await store.purge(2_000.0) == 1
    assert [f.id for f in await store.list_flows()] == ["flow-2"]
    assert await store.get_by_state(digest("state-1")) is None


async def test_tokens_put_get_list_delete(store: fe.Store) -> None:
    one, two = make_token(1, expires_at=1_500.0), make_token(2, expires_at=None)
    other = make_token(3, provider="other")
    for token in (one, two, other):
        await store.put_token(token)
    assert await store.get_token(one.key) == one
    assert {t.key for t in await store.list_tokens()} == {one.key, two.key, other.key}
    assert {t.key for t in await store.list_tokens(provider="podio")} == {one.key, two.key}
    assert [t.key for t in await store.list_tokens(expiring_before=2_000.0)] == [one.key]
    replaced = attrs.evolve(one, access_token="access-new")
    await store.put_token(replaced)
    assert await store.get_token(one.key) == replaced
    assert await store.delete_token(one.key) is True
    assert await store.delete_token(one.key) is False
    assert await store.get_token(one.key) is None


async def test_leases_are_exclusive_and_expire(store: fe.Store) -> None:
    first = await store.acquire("refresh:x", 30)
    assert first is not None
    assert await store.acquire("refresh:x", 30) is None
    assert await store.acquire("refresh:y", 30) is not None
    await store.release(first)
    second = await store.acquire("refresh:x", 0.05)
    assert second is not None
    await store.release(first)  # a stale release does not free someone else's lease
    assert await store.acquire("refresh:x", 30) is None
    await asyncio.sleep(0.06)  # the lease's own expiry is the behaviour under test
    assert await store.acquire("refresh:x", 30) is not None


async def test_concurrent_acquire_has_one_winner(store: fe.Store) -> None:
    leases = await asyncio.gather(*(store.acquire("exchange:z", 30) for _ in range(50)))
    assert sum(lease is not None for lease in leases) == 1
