"""Shared fixtures: one sandbox server per test session, reset before each test."""

from __future__ import annotations

import copy
import gc
import signal
from collections.abc import AsyncIterator, Iterator

import attrs
import flowengine as fe
import pytest

from flowengine_sandbox.plugin import PodioSandbox
from flowengine_sandbox.server import SandboxServer
from flowengine_sandbox.settings import SandboxSettings
from flowengine_sandbox.state import RecordedTokenRequest

# The fuzz profiles must exist before hypothesis reads --hypothesis-profile (tests/security/profiles.py).
from tests.security import profiles as _hypothesis_profiles  # noqa: F401

# The store-outage fixtures (networked_backend, fault_proxy), shared by tests/stores and tests/security.
pytest_plugins = ["tests.support.outages"]

_DEFAULTS = SandboxSettings()

# A run started in the background by a shell without job control (`pytest &`, nohup, some CI
# runners) inherits SIGINT ignored, and every process a test starts would inherit that too. The
# tests of Ctrl-C are about a terminal, where it is not ignored: give the children the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@attrs.define
class SandboxFixture:
    """The running sandbox, its client registration and what it recorded."""

    server: SandboxServer
    podio: PodioSandbox

    @property
    def settings(self) -> SandboxSettings:
        return self.server.settings

    @property
    def client(self) -> fe.Client:
        return self.podio.client

    @property
    def endpoints(self) -> dict[str, str]:
        return dict(self.podio.endpoints)

    def token_requests(self) -> list[RecordedTokenRequest]:
        return self.server.state.token_requests()

    async def consent(self, url: str | None, *, approve: bool = True) -> str:
        assert url is not None
        return await self.podio.consent(url, approve=approve)


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test runs (the CLI's default SQLite store included) writes to the real home."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    for name in ("FLOWENGINE_STORE", "FLOWENGINE_KEY", "FLOWENGINE_SANDBOX_URL", "FLOWENGINE_SPEC_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _collector_as_found() -> Iterator[None]:
    """A command that tunes the garbage collector for its process (``flowengine batch``) runs
    in-process here: the thresholds go back after each test."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.fixture(scope="session")
def podio_spec() -> fe.FlowSpec:
    return fe.load_spec("podio")


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxSettings()) as server:
        yield server


@pytest.fixture
def sandbox(_sandbox_server: SandboxServer, podio_spec: fe.FlowSpec) -> SandboxFixture:
    """The session's sandbox, with no codes, tokens or records and default settings."""
    server = _sandbox_server
    server.state.reset()
    for field in attrs.fields(SandboxSettings):
        setattr(server.settings, field.name, copy.deepcopy(getattr(_DEFAULTS, field.name)))
    return SandboxFixture(server, PodioSandbox(podio_spec, server.url, server.settings))


@pytest.fixture
async def engine(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> AsyncIterator[fe.AsyncEngine]:
    """An AsyncEngine for podio.yaml, pointed at the sandbox, on a memory store."""
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store="memory://"
    ) as engine:
        yield engine
