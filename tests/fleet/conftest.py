"""Fixtures of the fleet tests: the shared services (PostgreSQL, Redis, RabbitMQ), each isolated per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stores.backend_postgres import BACKEND as POSTGRES
from tests.stores.backend_redis import BACKEND as REDIS
from tests.stores.backends import Backend, require

SHARED = [POSTGRES, REDIS]


@pytest.fixture(params=SHARED, ids=[b.name for b in SHARED])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL schema or Redis key prefix: where a fleet keeps its shared state."""
    backend: Backend = request.param
    require(backend)
    url = backend.new_url(tmp_path)
    yield url
    backend.cleanup(url)


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL schema: the fleet's store."""
    require(POSTGRES)
    url = POSTGRES.new_url(tmp_path)
    yield url
    POSTGRES.cleanup(url)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A fresh Redis key prefix."""
    require(REDIS)
    url = REDIS.new_url(tmp_path)
    yield url
    REDIS.cleanup(url)
