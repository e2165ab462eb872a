"""The store backends the shared suites run against, found as ``backend_*.py`` beside this file.

Each module defines ``BACKEND``, an object with:

- ``name``: the id used in test ids (``sqlite``, ``redis``, ...);
- ``durable``: True when another process sees what this one stored;
- ``unavailable() -> str | None``: why the service cannot be used here, or None;
- ``new_url(tmp_path) -> str``: a fresh, isolated store URL (its own file,
  key prefix or schema), so runs and tests never see each other's data;
- ``cleanup(url)``: remove what ``new_url`` made;
- ``corrupt_flow(url, flow_id)`` / ``corrupt_token(url, key)``: damage one
  stored record in place, the way a bad disk or a bad hand would (None when
  the backend keeps objects, not bytes);
- ``raw_dump(url) -> bytes``: every byte the backend holds for this URL (the
  file, every key's value, every row), to prove what is and is not encrypted
  (None when the backend keeps objects, not bytes);
- ``open(url, clock) -> Store``: the store, timing its leases by ``clock`` when
  it keeps time itself (memory, SQLite);
- ``age_leases(url, seconds)``: for a store timed by its server (Redis,
  PostgreSQL), make every lease under ``url`` ``seconds`` closer to expiry,
  as if that much server time had passed; None for a store that keeps time
  itself (advance the clock instead);
- ``upstream``: ``(host, port)`` of the server a networked store talks to,
  so a fault proxy can sit in between (None for memory and SQLite), and
  ``via(url, host, port)``: the same store URL pointed at the proxy, with
  short timeouts so an outage fails a call fast.

When ``CI=true`` an unavailable service fails the test loudly; elsewhere it skips.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import flowengine as fe
import pytest


class Backend(Protocol):
    name: str
    durable: bool
    corrupt_flow: Callable[[str, str], None] | None
    corrupt_token: Callable[[str, str], None] | None
    raw_dump: Callable[[str], bytes] | None
    age_leases: Callable[[str, float], None] | None
    upstream: tuple[str, int] | None

    def unavailable(self) -> str | None: ...

    def open(self, url: str, clock: Callable[[], float]) -> fe.Store: ...

    def via(self, url: str, host: str, port: int) -> str: ...

    def new_url(self, tmp_path: Path) -> str: ...

    def cleanup(self, url: str) -> None: ...


def load_backends() -> list[Backend]:
    here = Path(__file__).parent
    names = sorted(p.stem for p in here.glob("backend_*.py"))
    return [importlib.import_module(f"tests.stores.{name}").BACKEND for name in names]


BACKENDS = load_backends()


def requested(request: pytest.FixtureRequest) -> Backend:
    """The backend a parametrized fixture was given, once ``require`` let it through."""
    backend: Backend = request.param
    require(backend)
    return backend


def require(backend: Backend) -> None:
    """Skip (or, under CI, fail) when the backend's service is not reachable."""
    reason = backend.unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{backend.name} store: {reason} (CI=true: the service must be running)")
    pytest.skip(f"{backend.name} store: {reason}")
