"""The store contract (DESIGN.md), run against every backend in tests/stores/backends.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import attrs
import flowengine as fe
import pytest
from flowengine import _plugins as plugins
from flowengine import digest
from flowengine._codec import KEY_ENV, new_store_key

from tests.stores.backends import Backend
from tests.support.clock import FakeClock


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


async def test_leases_are_exclusive_and_expire(store: fe.Store, time_passes: Callable[[float], None]) -> None:
    first = await store.acquire("refresh:x", 30)
    assert first is not None
    assert await store.acquire("refresh:x", 30) is None
    assert await store.acquire("refresh:y", 30) is not None
    await store.release(first)
    second = await store.acquire("refresh:x", 30)
    assert second is not None
    await store.release(first)  # a stale release does not free someone else's lease
    assert await store.acquire("refresh:x", 30) is None
    time_passes(20)  # (a server-timed lease keeps 10 s of slack for a slow machine)
    assert await store.acquire("refresh:x", 30) is None
    time_passes(11)
    assert await store.acquire("refresh:x", 30) is not None


async def test_a_renewed_lease_outlives_its_first_ttl(
    store: fe.Store, time_passes: Callable[[float], None]
) -> None:
    lease = await store.acquire("refresh:r", 10)
    assert lease is not None
    time_passes(6)
    renewed = await store.renew(lease, 10)
    assert renewed is not None
    assert (renewed.key, renewed.token) == (lease.key, lease.token)
    assert renewed.expires_at > lease.expires_at
    time_passes(6)  # past the first ttl, within the renewed one
    assert await store.acquire("refresh:r", 10) is None
    again = await store.renew(renewed, 10)  # a heartbeat: renewed as often as needed
    assert again is not None
    time_passes(11)  # the holder died: no more heartbeats, and the lease runs out
    assert await store.renew(again, 10) is None
    assert await store.acquire("refresh:r", 10) is not None


async def test_renew_refuses_a_lease_that_is_not_the_holders(store: fe.Store) -> None:
    lease = await store.acquire("exchange:n", 30)
    assert lease is not None
    await store.release(lease)
    assert await store.renew(lease, 30) is None  # released: nothing to renew
    other = await store.acquire("exchange:n", 30)
    assert other is not None
    assert await store.renew(lease, 30) is None  # another holder's now
    assert await store.renew(other, 30) is not None
    assert await store.acquire("exchange:n", 30) is None  # the other holder's lease stands


@pytest.mark.parametrize("ttl", [0, -1.0, float("inf"), float("nan")])
async def test_a_lease_needs_a_positive_finite_ttl(store: fe.Store, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.acquire("refresh:t", ttl)
    lease = await store.acquire("refresh:t", 30)
    assert lease is not None
    with pytest.raises(ValueError, match="ttl"):
        await store.renew(lease, ttl)


async def test_sec34_lease_expiry_follows_the_store_clock_without_real_waiting(
    backend: Backend, store: fe.Store, clock: FakeClock
) -> None:
    if backend.age_leases is not None:
        pytest.skip(f"the {backend.name} store times leases by its server's clock")
    lease = await store.acquire("refresh:clock", 3600)
    assert lease is not None
    assert lease.expires_at == clock.now() + 3600  # the injected clock, not time.time()
    await clock.sleep(3599)  # an hour, in no time at all
    assert await store.acquire("refresh:clock", 3600) is None
    await clock.sleep(2)
    taken = await store.acquire("refresh:clock", 3600)
    assert taken is not None and taken.expires_at == clock.now() + 3600
    assert await store.renew(lease, 3600) is None


async def test_concurrent_acquire_has_one_winner(store: fe.Store) -> None:
    leases = await asyncio.gather(*(store.acquire("exchange:z", 30) for _ in range(50)))
    assert sum(lease is not None for lease in leases) == 1


async def test_a_corrupted_flow_raises_a_typed_error_naming_it(
    backend: Backend, store_url: str, store: fe.Store
) -> None:
    if backend.corrupt_flow is None:
        pytest.skip(f"the {backend.name} store keeps objects, not bytes")
    await store.create(make_flow(1))
    await store.create(make_flow(2))
    backend.corrupt_flow(store_url, "flow-1")
    with pytest.raises(fe.StoreError) as caught:
        await store.get("flow-1")
    assert caught.value.code == "store_corrupt"
    assert "flow-1" in caught.value.message
    assert [f.id for f in await store.list_flows()] == ["flow-2"]  # the listing survives


async def test_a_corrupted_token_raises_a_typed_error_naming_it(
    backend: Backend, store_url: str, store: fe.Store
) -> None:
    if backend.corrupt_token is None:
        pytest.skip(f"the {backend.name} store keeps objects, not bytes")
    one, two = make_token(1), make_token(2)
    await store.put_token(one)
    await store.put_token(two)
    backend.corrupt_token(store_url, one.key)
    with pytest.raises(fe.StoreError) as caught:
        await store.get_token(one.key)
    assert caught.value.code == "store_corrupt"
    assert one.key in caught.value.message
    assert [t.key for t in await store.list_tokens()] == [two.key]


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "plain"])
async def test_sec15_tokens_are_encrypted_at_rest_when_a_key_is_set(
    backend: Backend, store_url: str, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    if backend.raw_dump is None:
        pytest.skip(f"the {backend.name} store keeps objects, not bytes")
    if keyed:
        monkeypatch.setenv(KEY_ENV, new_store_key())
    else:
        monkeypatch.delenv(KEY_ENV, raising=False)
    store = plugins.open_store(store_url)
    token = make_token(7)
    await store.put_token(token)
    await store.create(attrs.evolve(make_flow(7), code="the-code-in-flight"))
    assert await store.get_token(token.key) == token
    await store.aclose()
    raw = backend.raw_dump(store_url)
    for secret in (token.access_token, token.refresh_token or "", "the-code-in-flight", "verifier"):
        assert (secret.encode() in raw) is not keyed, secret


async def test_a_keyed_store_refuses_to_guess_without_its_key(
    backend: Backend, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not backend.durable:
        pytest.skip(f"the {backend.name} store lives in one process")
    monkeypatch.setenv(KEY_ENV, new_store_key())
    store = plugins.open_store(store_url)
    await store.put_token(make_token(1))
    await store.aclose()
    monkeypatch.setenv(KEY_ENV, new_store_key())
    wrong = plugins.open_store(store_url)
    with pytest.raises(fe.StoreError) as caught:
        await wrong.get_token(make_token(1).key)
    await wrong.aclose()
    assert caught.value.code == "store_corrupt"
    assert "key" in caught.value.message
