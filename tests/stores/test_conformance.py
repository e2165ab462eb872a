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


# --- the counts of the operator's view (Store.flow_counts, Store.token_counts) -------------------

HOUR = fe.FlowCounts.BUCKET
T0 = 1_800_000_000.0  # an hour's start (2027-01-15 08:00 UTC)


def started(n: int, *, spec: str = "podio", at: float = T0) -> fe.Flow:
    """A flow as the core creates it: version 1, its ``start`` in the history."""
    flow = attrs.evolve(make_flow(n, spec=spec, expires_at=at + 600), created_at=at)
    return attrs.evolve(flow, history=(fe.HistoryEntry(at, "start", "", "redirected"),))


def moved(flow: fe.Flow, event: str, dest: str, at: float, error: str | None = None) -> fe.Flow:
    """The flow one transition later, as the core writes it (one history entry per version)."""
    entry = fe.HistoryEntry(at, event, flow.state, dest, error)
    return attrs.evolve(flow, state=dest, version=flow.version + 1, history=(*flow.history, entry))


def states_of(counts: fe.FlowCounts) -> dict[tuple[str, str], int]:
    return {(c.spec, c.state): c.count for c in counts.states}


def steps_of(counts: fe.FlowCounts) -> dict[tuple[str, float, str, str, str, str | None], int]:
    return {(c.spec, c.hour, c.source, c.event, c.dest, c.error): c.count for c in counts.steps}


async def test_flow_counts_follow_creates_moves_deletes_and_purges(store: fe.Store) -> None:
    one, two, three = started(1), started(2, at=T0 + 10), started(3, spec="other", at=T0 + HOUR + 5)
    for flow in (one, two, three):
        await store.create(flow)
    authorized = moved(one, "callback", "authorized", T0 + 60)
    assert await store.compare_and_set(authorized, 1)
    failed = moved(two, "callback", "failed", T0 + HOUR + 1, error="access_denied_weird")
    assert await store.compare_and_set(failed, 1)
    exchanging = moved(authorized, "exchange", "exchanging", T0 + HOUR + 2)
    assert await store.compare_and_set(exchanging, 2)

    counts = await store.flow_counts(since=T0)
    assert states_of(counts) == {
        ("podio", "exchanging"): 1,
        ("podio", "failed"): 1,
        ("other", "redirected"): 1,
    }
    assert steps_of(counts) == {
        ("podio", T0, "", "start", "redirected", None): 2,
        ("podio", T0, "redirected", "callback", "authorized", None): 1,
        ("podio", T0 + HOUR, "redirected", "callback", "failed", "access_denied_weird"): 1,
        ("podio", T0 + HOUR, "authorized", "exchange", "exchanging", None): 1,
        ("other", T0 + HOUR, "", "start", "redirected", None): 1,
    }
    # One spec's, from one hour on (a time inside an hour reads that whole hour).
    later = await store.flow_counts(since=T0 + HOUR + 1800, spec="podio")
    assert states_of(later) == {("podio", "exchanging"): 1, ("podio", "failed"): 1}
    assert sum(c.count for c in later.steps) == 2

    assert await store.delete(two.id)
    assert await store.purge(T0 + 10_000) == 2  # every flow left expired at T0 + ~600
    counts = await store.flow_counts(since=T0)
    assert states_of(counts) == {}
    assert sum(c.count for c in counts.steps) == 6  # what happened stays counted


async def test_a_lost_compare_and_set_counts_nothing(store: fe.Store) -> None:
    flow = started(1)
    await store.create(flow)
    moves = [moved(flow, "callback", dest, T0 + 1) for dest in ("authorized", "denied", "failed") * 5]
    results = await asyncio.gather(*(store.compare_and_set(m, 1) for m in moves))
    assert results.count(True) == 1
    winner = moves[results.index(True)]
    assert not await store.compare_and_set(moved(flow, "callback", "failed", T0 + 2), 1)  # stale
    counts = await store.flow_counts(since=T0)
    assert states_of(counts) == {("podio", winner.state): 1}
    assert steps_of(counts) == {
        ("podio", T0, "", "start", "redirected", None): 1,
        ("podio", T0, "redirected", "callback", winner.state, None): 1,
    }


async def test_a_flow_written_without_a_new_transition_counts_no_step(store: fe.Store) -> None:
    await store.create(make_flow(1))  # no history at all: made by hand
    assert await store.compare_and_set(attrs.evolve(make_flow(1), state="elsewhere", version=2), 1)
    counts = await store.flow_counts(since=0)
    assert states_of(counts) == {("podio", "elsewhere"): 1}
    assert counts.steps == ()


async def test_purge_drops_transition_counts_past_keeping(store: fe.Store) -> None:
    await store.create(started(1, at=T0))
    await store.create(started(2, at=T0 + 3 * 86400))
    assert await store.purge(T0 + 3 * 86400) == 1
    assert sum(c.count for c in (await store.flow_counts(since=0)).steps) == 2
    await store.purge(T0 + fe.FlowCounts.KEPT + HOUR)  # the first hour is past keeping now
    assert [c.hour for c in (await store.flow_counts(since=0)).steps] == [T0 + 3 * 86400]


def health_token(
    account: int, *, expires_at: float | None, provider: str = "podio", **changes: object
) -> fe.Token:
    return attrs.evolve(make_token(account, provider=provider, expires_at=expires_at), **changes)


def healths(counts: fe.TokenCounts) -> dict[tuple[str, str], int]:
    return {(c.provider, c.health.value): c.count for c in counts.counts if c.count}


async def test_token_counts_by_health_with_those_needing_attention_first(store: fe.Store) -> None:
    now = T0
    tokens = [
        health_token(1, expires_at=now + 7200),  # fresh
        health_token(2, expires_at=None),  # fresh: no known expiry
        health_token(3, expires_at=now + 600),  # expiring within the 30 min window
        health_token(4, expires_at=now + 60),  # expiring sooner
        health_token(5, expires_at=now - 60),  # expired, refreshable
        health_token(6, expires_at=now - 120, refresh_token=None),  # expired for good
        health_token(7, expires_at=now + 9000, dead=True, dead_at=now - 500),  # dead
        health_token(8, expires_at=now - 10, dead=True, dead_at=now - 100),  # dead, more recently
        health_token(9, expires_at=now - 5, provider="other"),
    ]
    for token in tokens:
        await store.put_token(token)
    counts = await store.token_counts(now=now, within=1800)
    assert healths(counts) == {
        ("podio", "fresh"): 2,
        ("podio", "expiring"): 2,
        ("podio", "refreshable"): 1,
        ("podio", "expired"): 1,
        ("podio", "dead"): 2,
        ("other", "refreshable"): 1,
    }
    podio = [t for t in counts.tokens if t.provider == "podio"]
    assert [t.key for t in podio] == [f"podio:user:{n}" for n in (8, 7, 6, 5, 4, 3)]
    assert [t.key for t in counts.tokens if t.provider == "other"] == ["other:user:9"]
    assert podio[0] == tokens[7]  # whole tokens, as stored

    # One provider's, at most three shown; a wider window moves a fresh token to expiring.
    narrow = await store.token_counts(now=now, within=7300, provider="podio", limit=3)
    assert healths(narrow)[("podio", "expiring")] == 3
    assert [t.key for t in narrow.tokens] == ["podio:user:8", "podio:user:7", "podio:user:6"]
    assert (await store.token_counts(now=now, within=0, limit=0)).tokens == ()


async def test_token_counts_follow_replacing_and_deleting(store: fe.Store) -> None:
    now = T0
    live = health_token(1, expires_at=now + 7200)
    await store.put_token(live)
    await store.put_token(health_token(2, expires_at=now + 7200))
    await store.put_token(attrs.evolve(live, dead=True, dead_at=now))  # the grant was lost
    assert healths(await store.token_counts(now=now, within=60)) == {
        ("podio", "fresh"): 1,
        ("podio", "dead"): 1,
    }
    await store.put_token(attrs.evolve(live, expires_at=now + 30))  # a new login brought it back
    assert healths(await store.token_counts(now=now, within=60)) == {
        ("podio", "fresh"): 1,
        ("podio", "expiring"): 1,
    }
    assert await store.delete_token(live.key)
    assert healths(await store.token_counts(now=now, within=60)) == {("podio", "fresh"): 1}


@pytest.mark.parametrize(
    ("now", "within", "limit"),
    [(float("nan"), 60.0, 5), (T0, -1.0, 5), (T0, float("inf"), 5), (T0, 60.0, -1)],
)
async def test_token_counts_refuse_what_is_no_time_window_or_limit(
    store: fe.Store, now: float, within: float, limit: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        await store.token_counts(now=now, within=within, limit=limit)
