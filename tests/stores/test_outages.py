"""Store outages through a fault proxy of our own (SECURITY.md 20 and 23, the store's part).

Each networked store (Redis, PostgreSQL) is opened through ``FaultProxy`` with
short timeouts (``backend.via``), then the proxy cuts, refuses or blackholes
while the test watches: every call must fail promptly with ``StoreError``
(``store_unavailable``), never hang, and the same store object must work
again once the proxy restores, without a restart. Leases taken before an
outage can be renewed and released after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import flowengine as fe
import pytest
from flowengine import _plugins as plugins

from tests.stores.backends import Backend
from tests.stores.test_conformance import make_flow, make_token
from tests.support.faultproxy import FaultProxy

# Every timeout through the proxy is 1 s (PostgreSQL's connect: 2 s). A call gets this long
# to fail: an upper bound far above them, never a window.
BOUND = 15.0
# psycopg_pool waits 1 s, then 2 s... before reconnecting (capped by command_timeout): the
# first calls after an outage may still fail, each within 1 s. A count, not a time.
RECOVERY_CALLS = 20

Call = Callable[[fe.Store], Awaitable[object]]
CALLS: dict[str, Call] = {
    "get": lambda s: s.get("flow-1"),
    "get_by_state": lambda s: s.get_by_state(make_flow(1).state_hash),
    "list_flows": lambda s: s.list_flows(),
    "compare_and_set": lambda s: s.compare_and_set(attrs.evolve(make_flow(1), version=2), 1),
    "put_token": lambda s: s.put_token(make_token(2)),
    "get_token": lambda s: s.get_token(make_token(1).key),
    "acquire": lambda s: s.acquire("refresh:outage", 30),
}


pytestmark = pytest.mark.slow  # each test waits out a few 1 s timeouts


@pytest.fixture
def backend(networked_backend: Backend) -> Backend:
    """Only the stores with a server to lose (this overrides conftest's every-backend fixture)."""
    return networked_backend


@pytest.fixture
def proxy(fault_proxy: FaultProxy) -> FaultProxy:
    return fault_proxy


@pytest.fixture
async def proxied(backend: Backend, store_url: str, proxy: FaultProxy) -> AsyncIterator[fe.Store]:
    direct = plugins.open_store(store_url)  # the schema made and the records written with the
    await direct.create(make_flow(1))  # default timeouts: the short ones are for the outages
    await direct.put_token(make_token(1))
    await direct.aclose()
    store = plugins.open_store(backend.via(store_url, proxy.host, proxy.port))
    await _works(store)  # connected and pooled before any fault (a loaded server may miss 1 s at first)
    yield store
    await proxy.restore()
    await store.aclose()


async def _fails_fast(store: fe.Store, name: str) -> fe.StoreError:
    with pytest.raises(fe.StoreError) as caught:
        async with asyncio.timeout(BOUND):
            await CALLS[name](store)
    assert caught.value.code == "store_unavailable", (name, caught.value)
    assert caught.value.retryable
    return caught.value


async def _works(store: fe.Store) -> None:
    """The store answers again: after at most a few failed calls (a pool's reconnect backoff)."""
    failures: list[str] = []
    flow: fe.Flow | None = None
    while flow is None and len(failures) < RECOVERY_CALLS:
        try:
            async with asyncio.timeout(BOUND):
                flow = await store.get("flow-1")
        except fe.StoreError as exc:
            failures.append(exc.code)
    assert set(failures) <= {"store_unavailable"}
    assert flow is not None, f"the store did not recover in {RECOVERY_CALLS} calls"
    assert flow.id == "flow-1"  # (its version is 2 when a compare-and-set landed before a cut)
    assert await store.get_token(make_token(1).key) == make_token(1)
    lease = await store.acquire("refresh:after", 30)
    assert lease is not None
    await store.release(lease)


@pytest.mark.parametrize("outage", ["blackhole", "refuse"])
async def test_sec23_every_call_fails_fast_during_an_outage_and_works_after_it(
    proxied: fe.Store, proxy: FaultProxy, outage: str
) -> None:
    await (proxy.blackhole() if outage == "blackhole" else proxy.refuse())
    for name in CALLS:
        await _fails_fast(proxied, name)
    await proxy.restore()
    await _works(proxied)  # the same store object: its pool recovered by itself


@pytest.mark.parametrize("name", list(CALLS))
async def test_sec23_a_connection_cut_under_any_call_fails_it_fast_or_is_survived(
    proxied: fe.Store, proxy: FaultProxy, name: str
) -> None:
    """Every connection is cut the moment the server answers: the call fails with a typed error,
    or (PostgreSQL's pool, whose health check met the cut) carries on over a new connection."""
    struck = proxy.cut_on_next("down")
    codes: list[str] = []
    try:
        async with asyncio.timeout(BOUND):
            await CALLS[name](proxied)
    except fe.StoreError as exc:
        codes.append(exc.code)
    assert codes in ([], ["store_unavailable"])
    assert struck.is_set()
    await _works(proxied)


@pytest.mark.parametrize("direction", ["up", "down"])
async def test_sec23_a_cut_mid_operation_leaves_the_old_or_the_new_record_and_a_working_store(
    proxied: fe.Store, proxy: FaultProxy, direction: str
) -> None:
    new = attrs.evolve(make_token(1), access_token="access-new")
    struck = proxy.cut_on_next(direction)
    codes: list[str] = []
    try:
        async with asyncio.timeout(BOUND):
            await proxied.put_token(new)
    except fe.StoreError as exc:
        codes.append(exc.code)
    assert codes in ([], ["store_unavailable"])
    assert struck.is_set()  # the cut happened during the call
    stored = await proxied.get_token(new.key)
    assert stored in (make_token(1), new)  # never half-written
    if direction == "up" and stored == make_token(1):
        await proxied.put_token(new)  # what was lost on the way can be written again
    assert await proxied.get_token(new.key) == new


async def test_sec23_a_lease_taken_before_an_outage_is_renewed_and_released_after_it(
    proxied: fe.Store, proxy: FaultProxy, backend: Backend, store_url: str
) -> None:
    lease = await proxied.acquire("refresh:held", 30)
    assert lease is not None
    await proxy.blackhole()
    for attempt in (proxied.renew(lease, 30), proxied.release(lease)):
        with pytest.raises(fe.StoreError):
            async with asyncio.timeout(BOUND):
                await attempt
    await proxy.restore()
    renewed = await proxied.renew(lease, 30)  # still its holder's: the outage took nothing
    assert renewed is not None
    other = backend.open(store_url, lambda: 0.0)
    try:
        assert await other.acquire("refresh:held", 30) is None
        await proxied.release(renewed)  # its first try may meet a dead pooled connection
        assert await other.acquire("refresh:held", 30) is not None
    finally:
        await other.aclose()


async def test_sec23_a_lease_whose_holder_was_cut_off_runs_out_for_the_others(
    proxied: fe.Store, proxy: FaultProxy, backend: Backend, store_url: str
) -> None:
    lease = await proxied.acquire("refresh:orphan", 10)
    assert lease is not None
    await proxy.refuse()  # its holder can no longer renew: as good as dead
    with pytest.raises(fe.StoreError):
        await proxied.renew(lease, 10)
    other = backend.open(store_url, lambda: 0.0)
    try:
        assert await other.acquire("refresh:orphan", 10) is None  # it still blocks, for its ttl
        assert backend.age_leases is not None
        backend.age_leases(store_url, 11)  # 11 s of server time pass
        taken = await other.acquire("refresh:orphan", 10)
        assert taken is not None  # within seconds of its holder's end, not a minute
        await proxy.restore()
        await _works(proxied)
        assert await proxied.renew(lease, 10) is None  # the old holder learns it lost the lease
        assert await other.renew(taken, 10) is not None
    finally:
        await other.aclose()


async def test_sec23_the_proxy_itself_relays_cuts_refuses_and_blackholes(
    proxied: fe.Store, proxy: FaultProxy
) -> None:
    """The fault proxy does what it says: the suite above is only as good as it is."""
    accepted = proxy.accepted
    assert proxy.open >= 1 and accepted >= 1
    assert await proxy.cut() >= 1 and proxy.open == 0
    await _works(proxied)
    assert proxy.accepted > accepted  # the store had to reconnect
    await proxy.refuse()
    await _fails_fast(proxied, "get")
    assert proxy.open == 0
    await proxy.restore()
    await proxy.blackhole()
    await _fails_fast(proxied, "get")
    await proxy.restore()
    await _works(proxied)
