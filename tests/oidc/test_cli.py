"""The command line against Authlib's provider: ``login --device`` and ``spec from-issuer``.

``login --device`` runs in this process (click's runner) with a FakeClock handed through
click's context object, so its polls wait no real time; the provider is Authlib's, on
loopback, described by specs/examples/authlib-oidc.yaml (or by the spec ``from-issuer`` wrote).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import flowengine as fe
import pytest
from click.testing import CliRunner, Result
from flowengine import _plugins
from flowengine.cli import cli
from flowengine.testing import FakeClock

from flowengine_cli.device import qr_code
from tests.oidc.engine import SPEC, ActingClock
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, USER, OidcProvider


def _login(provider: OidcProvider, clock: FakeClock, *extra: str, spec: Path = SPEC) -> Result:
    _plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    args = ["login", str(spec), "--device", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    args += ["--connection", f"issuer={provider.issuer}", "--store", "memory://", *extra]
    if spec != SPEC:
        args.remove("--connection")
        args.remove(f"issuer={provider.issuer}")
    return CliRunner().invoke(cli, args, obj={"clock": clock}, catch_exceptions=False)


def _approver(provider: OidcProvider, at: int = 1, *, approve: bool = True) -> ActingClock:
    """A clock that plays the person at its ``at``-th wait: finds the pending user code, decides."""

    def decide() -> None:
        with provider.state.lock:
            [user_code] = [d["user_code"] for d in provider.state.devices.values()]
        provider.decide_device(user_code, approve=approve)

    return ActingClock(decide, at)


def test_a_device_login_prints_the_code_and_the_uri_then_is_granted(provider: OidcProvider) -> None:
    result = _login(provider, _approver(provider))
    assert result.exit_code == 0, result.output
    with provider.state.lock:
        assert provider.state.devices == {}  # the device code was spent
    out = result.output
    assert f"open {provider.issuer}/device on any device and enter the code:" in out
    assert f"Or open {provider.issuer}/device?user_code=" in out
    assert "requested -> granted" in out
    assert f"Authorized as {provider.issuer}:{USER.sub}" in out
    assert "device_code" not in out


@pytest.mark.parametrize(
    ("act", "status", "code"),
    [("deny", 3, "access_denied"), ("expire", 5, "device_code_expired")],
)
def test_a_denied_or_expired_device_login_exits_with_its_status(
    provider: OidcProvider, act: str, status: int, code: str
) -> None:
    def decide() -> None:
        with provider.state.lock:
            [user_code] = [d["user_code"] for d in provider.state.devices.values()]
        if act == "deny":
            provider.decide_device(user_code, approve=False)
        else:
            provider.expire_device(user_code)

    result = _login(provider, ActingClock(decide, 1))
    assert result.exit_code == status, result.output
    assert f"[{code}]" in result.output


def test_a_device_login_nobody_answers_ends_when_the_code_expires(provider: OidcProvider) -> None:
    provider.device_settings(interval=5, expires_in=60)
    clock = FakeClock(__import__("time").time())
    result = _login(provider, clock)
    assert result.exit_code == 5, result.output
    assert "requested -> expired" in result.output and "[device_pending_timeout]" in result.output
    assert sum(clock.slept) == pytest.approx(60)


def test_slow_down_is_honoured_by_the_command(provider: OidcProvider) -> None:
    provider.slow_down_next(1)
    clock = _approver(provider, at=2)
    result = _login(provider, clock)
    assert result.exit_code == 0, result.output
    assert clock.slept == [5, 10]


def test_timeout_gives_up_before_the_code_expires(provider: OidcProvider) -> None:
    clock = FakeClock(__import__("time").time())
    result = _login(provider, clock, "--timeout", "12s")
    assert result.exit_code == 5, result.output
    assert "login_timeout" in result.output
    assert clock.slept == [5, 5]


def test_from_issuer_writes_a_spec_that_logs_in(provider: OidcProvider, tmp_path: Path) -> None:
    _plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    out = tmp_path / "authlib-local.yaml"
    written = CliRunner().invoke(
        cli, ["spec", "from-issuer", provider.issuer, "--name", "authlib-local", "-o", str(out)]
    )
    assert written.exit_code == 0, written.output
    spec = fe.load_spec(out)
    assert spec.issuer == provider.issuer and spec.pkce and spec.openid is not None
    assert spec.device is not None and spec.callback.iss_required
    assert spec.endpoints["jwks"] == f"{provider.issuer}/jwks"
    assert spec.grants["authorization_code"].client_auth == "basic"
    result = _login(provider, _approver(provider), spec=out)
    assert result.exit_code == 0, result.output
    assert f"Authorized as {provider.issuer}:{USER.sub}" in result.output


def test_from_issuer_refuses_a_document_of_another_issuer(provider: OidcProvider) -> None:
    provider.discovery(issuer="https://impostor.example")
    _plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    result = CliRunner().invoke(cli, ["spec", "from-issuer", provider.issuer])
    assert result.exit_code == 4, result.output
    assert "discovery_issuer_mismatch" in result.output


class _Terminal(io.StringIO):
    def __init__(self, tty: bool, encoding: str) -> None:
        super().__init__()
        self._tty, self._encoding = tty, encoding

    def isatty(self) -> bool:
        return self._tty

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding


def test_the_qr_code_is_drawn_only_where_a_terminal_can_show_it(monkeypatch: Any) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "120")
    url = "https://id.example.com/device?user_code=WDJB-MJHT"
    drawn = qr_code(url, _Terminal(True, "utf-8"))
    assert drawn is not None and "█" in drawn
    lines = drawn.splitlines()
    assert len({len(line) for line in lines}) == 1 and len(lines[0]) >= 21 + 4  # a version 1+ code, framed
    assert qr_code(url, _Terminal(False, "utf-8")) is None  # a pipe
    assert qr_code(url, _Terminal(True, "ascii")) is None  # no block characters
    monkeypatch.setenv("COLUMNS", "20")
    assert qr_code(url, _Terminal(True, "utf-8")) is None  # too narrow
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("TERM", "dumb")
    assert qr_code(url, _Terminal(True, "utf-8")) is None


def test_device_login_of_a_spec_without_a_device_section_exits_2() -> None:
    _plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    args = ["login", "github", "--device", "--sandbox", "--store", "memory://"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "device_unsupported" in result.output
