"""The sandbox emulates the device grant (RFC 8628) of every spec that declares one, and OpenID.

Google's, Microsoft's and GitLab's shipped specs each declare a device section: against the
sandbox they are approved at its verification page, or denied, expired and slowed down as
its settings say (``device``, ``device_slow_down``, like ``consent``). Their ID tokens are
signed by the sandbox and verified by the engine against the key set the sandbox serves at
the spec's ``jwks`` endpoint. Waits go through a FakeClock.
"""

from __future__ import annotations

import asyncio
import time

import flowengine as fe
import httpx
import pytest
from flowengine.testing import FakeClock

from flowengine_sandbox.plugin import SpecSandbox
from tests.conftest import SandboxFixture

DEVICE_SPECS = ["google", "microsoft", "gitlab"]


def _engine(sandbox: SandboxFixture, name: str, clock: FakeClock) -> tuple[fe.AsyncEngine, SpecSandbox]:
    emulator = SpecSandbox(fe.load_spec(name), sandbox.server.url, sandbox.settings)
    emulator.__enter__()  # registers the spec with the running sandbox
    engine = fe.AsyncEngine(
        emulator.spec, client=emulator.client, endpoints=emulator.endpoints, clock=clock, store="memory://"
    )
    return engine, emulator


@pytest.mark.parametrize("name", DEVICE_SPECS)
async def test_a_device_approved_at_the_verification_page_is_granted(
    sandbox: SandboxFixture, name: str
) -> None:
    clock = FakeClock(time.time())
    engine, emulator = _engine(sandbox, name, clock)
    async with engine:
        flow = await engine.start_device()
        assert flow.device is not None and flow.device.verification_uri_complete is not None
        page = await asyncio.to_thread(httpx.get, flow.device.verification_uri_complete, trust_env=False)
        assert page.status_code == 200 and flow.device.user_code in page.text
        await emulator.consent(flow.device.verification_uri_complete, approve=True)
        done = await engine.poll_device(flow)
        token = await engine.token_for(done)
    assert done.outcome == "granted", done.error
    assert token is not None and token.claims["sub"] == str(sandbox.settings.user.id)
    assert str(token.account).startswith("https://")  # sub within the spec's issuer


@pytest.mark.parametrize(
    ("decision", "state", "code"),
    [("deny", "denied", "access_denied"), ("expire", "expired", "device_code_expired")],
)
async def test_the_settings_force_a_denial_or_an_expiry(
    sandbox: SandboxFixture, decision: str, state: str, code: str
) -> None:
    sandbox.settings.device = decision  # type: ignore[assignment]
    engine, _ = _engine(sandbox, "google", FakeClock(time.time()))
    async with engine:
        done = await engine.poll_device(await engine.start_device())
    assert (done.state, done.error.code if done.error else None) == (state, code)


async def test_slow_down_and_the_interval_follow_the_settings(sandbox: SandboxFixture) -> None:
    sandbox.settings.device_interval = 2
    sandbox.settings.device_slow_down = 2
    sandbox.settings.device = "approve"
    clock = FakeClock(time.time())
    engine, _ = _engine(sandbox, "microsoft", clock)
    async with engine:
        done = await engine.poll_device(await engine.start_device())
    assert done.outcome == "granted", done.error
    assert clock.slept == [2, 7, 12]


async def test_a_pending_device_code_runs_out(sandbox: SandboxFixture) -> None:
    sandbox.settings.device_ttl = 20
    clock = FakeClock(time.time())
    engine, _ = _engine(sandbox, "gitlab", clock)
    async with engine:
        done = await engine.poll_device(await engine.start_device())
    assert (done.state, done.error.code if done.error else None) == ("expired", "device_pending_timeout")
    assert sum(clock.slept) == pytest.approx(20)


def test_the_device_settings_are_adjustable_like_the_others(sandbox: SandboxFixture) -> None:
    answer = httpx.post(
        f"{sandbox.server.url}/_sandbox/settings",
        json={"device": "deny", "device_slow_down": 1},
        trust_env=False,
    )
    assert answer.status_code == 200 and answer.json()["device"] == "deny"
    refused = httpx.post(f"{sandbox.server.url}/_sandbox/settings", json={"device": "maybe"}, trust_env=False)
    assert refused.status_code == 400


def test_the_cli_device_login_against_the_sandbox(
    sandbox: SandboxFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from flowengine import _plugins
    from flowengine.cli import cli

    monkeypatch.setenv("FLOWENGINE_SANDBOX_URL", sandbox.server.url)
    _plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    clock = FakeClock(time.time())
    for flag, status in (("--approve", 0), ("--deny", 3)):
        args = ["login", "google", "--device", "--sandbox", flag, "--store", "memory://"]
        result = CliRunner().invoke(cli, args, obj={"clock": clock}, catch_exceptions=False)
        assert result.exit_code == status, result.output
        assert "enter the code:" in result.output


def test_a_spec_that_discovers_its_endpoints_has_no_sandbox() -> None:
    with pytest.raises(fe.PluginError) as info:
        fe.open_sandbox(fe.load_spec("oidc"))
    assert info.value.code == "sandbox_unsupported"
