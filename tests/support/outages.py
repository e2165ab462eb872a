"""The fixtures of the store-outage tests (tests/stores/test_outages.py, tests/security/test_outage_proof.py).

Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py; a test asks for them
by name:

- ``networked_backend``: each store with a server to lose (Redis, PostgreSQL), in turn; an
  unreachable one skips (fails under ``CI=true``);
- ``fault_proxy``: a ``FaultProxy`` (tests/support/faultproxy.py) in front of that server,
  relaying until the test says otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.stores.backends import BACKENDS, Backend, requested
from tests.support.faultproxy import FaultProxy

__all__ = ["NETWORKED", "fault_proxy", "networked_backend"]

NETWORKED = [backend for backend in BACKENDS if backend.upstream is not None]


@pytest.fixture(params=NETWORKED, ids=[backend.name for backend in NETWORKED])
def networked_backend(request: pytest.FixtureRequest) -> Backend:
    """Each store with a server to lose: Redis, PostgreSQL."""
    return requested(request)


@pytest.fixture
async def fault_proxy(networked_backend: Backend) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of ``networked_backend``'s server, relaying."""
    assert networked_backend.upstream is not None
    async with FaultProxy(networked_backend.upstream) as proxy:
        yield proxy
