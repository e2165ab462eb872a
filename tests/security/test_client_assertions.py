"""SECURITY.md 38: a signed client assertion is built for each attempt, never replayed by a retry.

A provider that is busy (503 with ``Retry-After: 25``) three times, then answers. Time is a
``FakeClock``: the engine's backoff moves it, so the fourth attempt goes out 75 s after the
first, past the 60 s an assertion lives. The provider here is as strict as RFC 7523 §3
lets one be: it records every assertion's claims at the moment it arrives, and the test
checks each ``jti`` is new and no ``exp`` has passed. Grant, refresh, revocation and the
device authorization request each run with private_key_jwt and with client_secret_jwt.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import attrs
import flowengine as fe
import pytest
from flowengine.testing import FakeClock, MockTransport, json_response

from tests.support.keys import rsa_key

ROOT = Path(__file__).resolve().parents[2]
BUSY = 3  # answers 503 this many times before it answers
SECRET = "a-client-secret-long-enough-for-hs256-0123456789"

_SPEC = """\
extends: {base}
name: signed-client
endpoints:
  device: http://127.0.0.1:5000/oauth/device
grants:
  refresh_token: {{client_auth: {method}}}
  client_credentials:
    endpoint: token
    encoding: form
    client_auth: {method}
    params: {{grant_type: client_credentials, scope: "{{scope}}"}}
  device_code:
    endpoint: token
    encoding: form
    client_auth: {method}
    params: {{grant_type: "urn:ietf:params:oauth:grant-type:device_code", device_code: "{{device_code}}"}}
device:
  endpoint: device
  client_auth: {method}
  params: {{scope: "{{scope}}"}}
revocation: {{client_auth: {method}}}
"""


@attrs.define
class BusyProvider:
    """Answers the endpoint under test 503 ``BUSY`` times, then as asked; records each assertion."""

    clock: FakeClock
    busy_path: str = ""
    #: (when it arrived, the assertion, its claims) for every request to ``busy_path``.
    arrived: list[tuple[float, str, dict[str, Any]]] = attrs.Factory(list)
    echo_error: bool = False
    issued: int = 0

    def __call__(self, request: fe.HttpRequest) -> fe.HttpResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        path = request.url.split("5000", 1)[1]
        if path != self.busy_path:
            return self._answer(path)
        assertion = form["client_assertion"]
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        self.arrived.append((self.clock(), assertion, claims))
        if len(self.arrived) <= BUSY:
            return fe.HttpResponse(503, {"retry-after": "25"}, b"busy")
        if self.echo_error:  # a provider that quotes the request back in its error
            said = f"bad client_assertion={assertion}"
            return json_response({"error": "invalid_client", "error_description": said}, 401)
        return self._answer(path)

    def _answer(self, path: str) -> fe.HttpResponse:
        if path == "/oauth/device":
            return json_response(
                {
                    "device_code": "D" * 43, "user_code": "WDJB-MJHT", "expires_in": 600, "interval": 5,
                    "verification_uri": "https://as.example/device",
                }
            )  # fmt: skip
        if path == "/oauth/revoke":
            return fe.HttpResponse(200, {}, b"")
        self.issued += 1
        n = self.issued
        token = {"access_token": f"AT-{n}", "token_type": "bearer", "refresh_token": f"RT-{n}"}
        return json_response({**token, "expires_in": 3600})


def _client(method: str, tmp_path: Path) -> fe.Client:
    if method == "client_secret_jwt":
        return fe.Client("cid", SECRET, "http://127.0.0.1/cb")
    key_file = tmp_path / "client-key.pem"
    key_file.write_bytes(rsa_key(0).as_pem(private=True))
    return fe.Client("cid", None, "http://127.0.0.1/cb", private_key=key_file)


async def _grant(engine: fe.AsyncEngine) -> Any:
    return await engine.grant("client_credentials", subject="svc")


async def _refresh(engine: fe.AsyncEngine) -> Any:
    return await engine.refresh("signed-client:subject:svc")


async def _revoke(engine: fe.AsyncEngine) -> Any:
    return await engine.revoke("signed-client:subject:svc")


async def _device(engine: fe.AsyncEngine) -> Any:
    return await engine.start_device(scope="api")


OPERATIONS: dict[str, tuple[str, Callable[[fe.AsyncEngine], Awaitable[Any]]]] = {
    "grant": ("/oauth/token", _grant),
    "refresh": ("/oauth/token", _refresh),
    "revoke": ("/oauth/revoke", _revoke),
    "device": ("/oauth/device", _device),
}


async def _run(method: str, operation: str, tmp_path: Path, *, echo_error: bool = False) -> BusyProvider:
    spec = tmp_path / "signed-client.yaml"
    spec.write_text(_SPEC.format(base=ROOT / "specs/examples/authlib.yaml", method=method), encoding="utf-8")
    clock = FakeClock()
    provider = BusyProvider(clock, echo_error=echo_error)
    path, operate = OPERATIONS[operation]
    async with fe.AsyncEngine(
        spec, client=_client(method, tmp_path), transport=MockTransport(provider), clock=clock
    ) as engine:
        if operation in ("refresh", "revoke"):
            await _grant(engine)  # a token to refresh or revoke, granted at once
            clock.advance(1)  # (a refresh by key asked at the very moment of the grant has nothing to do)
        provider.busy_path = path
        if echo_error:
            with pytest.raises(fe.ProviderError) as raised:
                await operate(engine)
            assert raised.value.code == "invalid_client"
            text = str(raised.value) + json.dumps(raised.value.body)
            for _, assertion, _ in provider.arrived:
                _, payload, signature = assertion.split(".")
                for piece in (assertion, payload[-16:], signature):  # no part of it, whole or cut
                    assert piece not in text
            assert "client_assertion=" in text  # the words are kept, the secret is not
        else:
            await operate(engine)
    return provider


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("method", ["private_key_jwt", "client_secret_jwt"])
async def test_sec38_every_attempt_sends_a_new_assertion_none_expired(
    method: str, operation: str, tmp_path: Path
) -> None:
    provider = await _run(method, operation, tmp_path)

    assert len(provider.arrived) == BUSY + 1
    started = provider.arrived[0][0]
    assert [at - started for at, _, _ in provider.arrived] == [0, 25, 50, 75]  # past one assertion's life
    jtis = [claims["jti"] for _, _, claims in provider.arrived]
    assert len(set(jtis)) == len(jtis)  # a fresh jti every attempt
    for at, _, claims in provider.arrived:
        assert claims["iat"] <= at < claims["exp"]  # issued for this attempt, alive when it arrived
        assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_sec38_each_attempts_assertion_is_scrubbed_from_what_the_provider_says(
    operation: str, tmp_path: Path
) -> None:
    provider = await _run("client_secret_jwt", operation, tmp_path, echo_error=True)

    assert len({assertion for _, assertion, _ in provider.arrived}) == BUSY + 1
