"""Fixtures of the SECURITY.md checks, and the hypothesis profiles of the fuzz tests.

Profiles (``profiles.py``): ``ci``, the default here (bounded, derandomized, no
example database: a CI run takes seconds and never flakes), and ``long``
(``pytest tests/security --hypothesis-profile=long``: thousands of random examples).
The store fixtures run a test once per backend of ``tests/stores``; an unreachable
Redis or PostgreSQL skips (fails under ``CI=true``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.security import profiles  # noqa: F401 - registers the hypothesis profiles
from tests.stores.backends import BACKENDS, Backend, requested


def pytest_configure(config: pytest.Config) -> None:
    """Load the bounded profile unless ``--hypothesis-profile`` chose one."""
    if not config.getoption("--hypothesis-profile", default=None):
        settings.load_profile("ci")


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each store backend in turn (memory, postgres, redis, sqlite)."""
    return requested(request)


@pytest.fixture(params=[b for b in BACKENDS if b.durable], ids=[b.name for b in BACKENDS if b.durable])
def durable_backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend another process can see (postgres, redis, sqlite)."""
    return requested(request)


@pytest.fixture
def store_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """A fresh store URL of ``backend``, removed afterwards."""
    url = backend.new_url(tmp_path)
    yield url
    backend.cleanup(url)


@pytest.fixture
def durable_url(durable_backend: Backend, tmp_path: Path) -> Iterator[str]:
    """A fresh store URL of ``durable_backend``, removed afterwards."""
    url = durable_backend.new_url(tmp_path)
    yield url
    durable_backend.cleanup(url)
