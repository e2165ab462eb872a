"""Fixtures of the shared store suites: every test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import flowengine as fe
import pytest

from tests.stores.backends import BACKENDS, Backend, requested
from tests.support.clock import FakeClock


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return requested(request)


@pytest.fixture
def durable_backend(backend: Backend) -> Backend:
    if not backend.durable:
        pytest.skip(f"the {backend.name} store lives in one process")
    return backend


@pytest.fixture
def store_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    url = backend.new_url(tmp_path)
    yield url
    backend.cleanup(url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(backend: Backend, store_url: str, clock: FakeClock) -> AsyncIterator[fe.Store]:
    store = backend.open(store_url, clock.now)
    yield store
    await store.aclose()


@pytest.fixture
def time_passes(backend: Backend, store_url: str, clock: FakeClock) -> Callable[[float], None]:
    """Let ``seconds`` pass for the store's leases: its clock, or its server's lease records."""

    def passes(seconds: float) -> None:
        clock.advance(seconds)
        if backend.age_leases is not None:
            backend.age_leases(store_url, seconds)

    return passes
