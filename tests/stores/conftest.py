"""Fixtures of the shared store suites: every test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import flowengine as fe
import pytest
from flowengine import _plugins as plugins

from tests.stores.backends import BACKENDS, Backend, require


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    require(backend)
    return backend


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
async def store(store_url: str) -> AsyncIterator[fe.Store]:
    store = plugins.open_store(store_url)
    yield store
    await store.aclose()
