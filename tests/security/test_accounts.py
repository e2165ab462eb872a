"""SECURITY.md 32: tokens of different people never share a key.

Without an account in the token answer, the account comes from the spec (a userinfo
endpoint and a path in its answer), else from the caller's ``subject``, else the flow
itself: never the client alone. ``token_for(flow)`` is always that flow's token.
"""

from __future__ import annotations

from typing import Any

import flowengine as fe
import pytest
from flowengine.testing import MockTransport, json_response

CLIENT = fe.Client("cid", "cs-SECRET", "https://app.example.com/callback")


def _spec(account: dict[str, Any] | None) -> fe.FlowSpec:
    data: dict[str, Any] = {
        "name": "plain",
        "endpoints": {
            "authorize": "https://id.example/authorize",
            "token": "https://id.example/token",
            "user": "https://api.example/user",
        },
        "authorization": {"params": {"client_id": "{client_id}", "state": "{state}", "scope": "{scope}"}},
        "grants": {
            "authorization_code": {"params": {"grant_type": "authorization_code", "code": "{code}"}},
        },
    }
    if account is not None:
        data["token"] = {"account": account}
    return fe.load_spec(data)


class Provider:
    """A plain RFC 6749 server: its token answer names nobody; /user says who the token is."""

    def __init__(self, *, userinfo_status: int = 200) -> None:
        self.issued: dict[str, str] = {}  # access token -> person
        self.userinfo_status = userinfo_status
        self.person = "alice"

    def __call__(self, request: fe.HttpRequest) -> fe.HttpResponse:
        if request.url.endswith("/token"):
            access = f"at-{len(self.issued)}-{self.person}"
            self.issued[access] = self.person
            return json_response({"access_token": access, "token_type": "bearer", "expires_in": 3600})
        access = request.headers["authorization"].split(" ", 1)[1]
        if self.userinfo_status != 200:
            return json_response({"error": "nope"}, status=self.userinfo_status)
        return json_response(
            {"id": {"alice": 1, "bob": 2}[self.issued[access]], "login": self.issued[access]}
        )


async def _login(engine: fe.AsyncEngine, provider: Provider, person: str, **start: Any) -> fe.Flow:
    provider.person = person
    flow = await engine.start(**start)
    state = flow.authorization_url.split("state=")[1].split("&")[0]  # type: ignore[union-attr]
    return await engine.callback({"state": state, "code": f"code-of-{person}"})


@pytest.mark.parametrize(
    ("account", "start", "keys"),
    [
        (None, {}, "flow"),
        (None, {"subject": True}, "subject"),
        ({"userinfo": "user", "id": "id", "default_type": "user"}, {}, "userinfo"),
    ],
    ids=["by-flow", "by-subject", "by-userinfo"],
)
async def test_sec32_two_people_through_one_client_get_two_tokens(
    account: dict[str, Any] | None, start: dict[str, bool], keys: str
) -> None:
    provider = Provider()
    async with fe.AsyncEngine(_spec(account), client=CLIENT, transport=MockTransport(provider)) as engine:
        first = await _login(engine, provider, "alice", **({"subject": "alice"} if start else {}))
        second = await _login(engine, provider, "bob", **({"subject": "bob"} if start else {}))
        alice = await engine.token_for(first)
        bob = await engine.token_for(second)
    assert alice is not None and bob is not None
    assert first.token_key != second.token_key
    assert provider.issued[alice.access_token] == "alice"
    assert provider.issued[bob.access_token] == "bob"
    expected = {
        "flow": (fe.AccountRef("flow", first.id), fe.AccountRef("flow", second.id)),
        "subject": (fe.AccountRef("subject", "alice"), fe.AccountRef("subject", "bob")),
        "userinfo": (fe.AccountRef("user", 1), fe.AccountRef("user", 2)),
    }[keys]
    assert (alice.account, bob.account) == expected
    assert all(k != f"plain:client:{CLIENT.client_id}" for k in (first.token_key, second.token_key))


async def test_sec32_the_same_person_twice_is_one_token_under_one_key() -> None:
    provider = Provider()
    spec = _spec({"userinfo": "user", "id": "id", "default_type": "user"})
    async with fe.AsyncEngine(spec, client=CLIENT, transport=MockTransport(provider)) as engine:
        first = await _login(engine, provider, "alice")
        again = await _login(engine, provider, "alice")
        assert first.token_key == again.token_key == "plain:user:1"
        latest = await engine.token_for(first)
    assert latest is not None
    assert latest.fingerprint == again.token_fingerprint


async def test_sec32_a_failing_userinfo_files_the_token_under_its_flow_and_loses_nothing() -> None:
    provider = Provider(userinfo_status=500)
    spec = _spec({"userinfo": "user", "id": "id"})
    async with fe.AsyncEngine(
        spec, client=CLIENT, transport=MockTransport(provider), retry=fe.RetryPolicy(attempts=1)
    ) as engine:
        flow = await _login(engine, provider, "alice")
        token = await engine.token_for(flow)
    assert flow.outcome == "granted"
    assert token is not None
    assert token.account == fe.AccountRef("flow", flow.id)


async def test_sec32_the_userinfo_request_carries_the_new_token_in_the_specs_header_form() -> None:
    provider = Provider()
    transport = MockTransport(provider)
    spec = _spec({"userinfo": "user", "id": "id"})
    async with fe.AsyncEngine(spec, client=CLIENT, transport=transport) as engine:
        flow = await _login(engine, provider, "bob")
    token_request, user_request = transport.sent
    assert user_request.method == "GET"
    assert user_request.url == "https://api.example/user"
    assert token_request.method == "POST"
    assert user_request.body == b""
    assert user_request.headers["authorization"].startswith("Bearer at-")
    assert flow.account == fe.AccountRef("account", 2)


def test_sec32_a_userinfo_endpoint_must_be_named() -> None:
    with pytest.raises(fe.SpecError) as caught:
        _spec({"userinfo": "me", "id": "id"})
    assert [p.path for p in caught.value.problems] == ["$.token.account.userinfo"]
