"""The podio, a local emulator of Podio's authorization server, through its public surfaces."""

from __future__ import annotations

import base64
import json
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from flowengine_sandbox.app import create_app
from flowengine_sandbox.consent import consent
from flowengine_sandbox.errors import SandboxError
from flowengine_sandbox.faults import Fault, FaultPlan
from flowengine_sandbox.server import SandboxServer
from flowengine_sandbox.settings import RegisteredClient, SandboxSettings
from flowengine_sandbox.state import SandboxState, fingerprint

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
USER_PASSWORD = "sandbox-password"
REDIRECT_URI = "http://127.0.0.1:8765/callback"
# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
ENVELOPE_KEYS = {
    "error",
    "error_description",
    "error_detail",
    "error_parameters",
    "error_propagate",
    "request",
}


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(clock: FakeClock) -> SandboxSettings:
    return SandboxSettings(clock=clock)


@pytest.fixture
def state() -> SandboxState:
    return SandboxState()


@pytest.fixture
async def podio(settings: SandboxSettings, state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a fresh sandbox app, served in-process (no sockets)."""
    transport = httpx.ASGITransport(app=create_app(settings, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


def authorize_params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "user:read space:all",
        "state": "xyz",
        "response_type": "code",
        **overrides,
    }
    return {name: value for name, value in params.items() if value is not None}


def callback_params(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query)


async def get_code(podio: httpx.AsyncClient, settings: SandboxSettings, **overrides: str | None) -> str:
    settings.consent = "approve"
    response = await podio.get("/oauth/authorize", params=authorize_params(**overrides))
    assert response.status_code == 302, response.text
    return callback_params(response.headers["location"])["code"][0]


def exchange_fields(code: str, **overrides: str | None) -> dict[str, str]:
    fields: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "code": code,
        **overrides,
    }
    return {name: value for name, value in fields.items() if value is not None}


async def token(podio: httpx.AsyncClient, **fields: str) -> httpx.Response:
    return await podio.post("/oauth/token/v2", json=fields)


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["error"] == error
    return dict(body)


# The authorization endpoint and its consent page


async def test_consent_page_shows_login_scope_and_form(podio: httpx.AsyncClient) -> None:
    response = await podio.get("/oauth/authorize", params=authorize_params())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert "Signed in as user@example.com" in page
    assert "<code>user:read</code>" in page
    assert "<code>space:all</code>" in page
    assert '<form method="post" action="/oauth/authorize">' in page
    assert '<button name="decision" value="grant">Grant</button>' in page
    assert '<button name="decision" value="deny">Deny</button>' in page
    assert '<input type="hidden" name="state" value="xyz">' in page
    for external in ("<script", "<link", "<img", "src=", "href="):
        assert external not in page
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_consent_page_without_scope_shows_global_all(podio: httpx.AsyncClient) -> None:
    response = await podio.get("/oauth/authorize", params=authorize_params(scope=None))

    assert "<code>global:all</code>" in response.text


async def test_consent_page_escapes_every_value(podio: httpx.AsyncClient) -> None:
    hostile = '"><script>alert(1)</script>'
    params = authorize_params(state=hostile, redirect_uri=f"{REDIRECT_URI}?next='a'&b=\"c\"")

    response = await podio.get("/oauth/authorize", params=params)

    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    # The escaped hidden fields carry the exact values through the form.
    location = await consent(podio, str(response.url), approve=True)
    assert callback_params(location)["state"] == [hostile]
    assert location.startswith(f"{REDIRECT_URI}?next='a'&b=\"c\"&code=")


@pytest.mark.parametrize(
    ("redirect_uri", "expected_start"),
    [
        (f"{REDIRECT_URI}?tenant=a", f"{REDIRECT_URI}?tenant=a&code="),
        (f"{REDIRECT_URI}?", f"{REDIRECT_URI}?code="),
        ("HTTP://127.0.0.1/a//b?x=%2F", "HTTP://127.0.0.1/a//b?x=%2F&code="),
    ],
)
async def test_grant_redirects_with_code_and_state_keeping_the_uri(
    podio: httpx.AsyncClient, redirect_uri: str, expected_start: str
) -> None:
    form = authorize_params(redirect_uri=redirect_uri, decision="grant")

    response = await podio.post("/oauth/authorize", data=form)

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(expected_start)
    assert callback_params(location)["state"] == ["xyz"]
    assert response.headers["cache-control"] == "no-store"


async def test_deny_redirects_with_podio_error(podio: httpx.AsyncClient) -> None:
    response = await podio.post("/oauth/authorize", data=authorize_params(decision="deny"))

    assert response.status_code == 302
    assert response.headers["location"] == (
        f"{REDIRECT_URI}?error_reason=user_denied&error=access_denied"
        "&error_description=The+user+denied+your+request.&state=xyz"
    )


async def test_state_is_left_out_when_not_sent(podio: httpx.AsyncClient, settings: SandboxSettings) -> None:
    settings.consent = "deny"

    response = await podio.get("/oauth/authorize", params=authorize_params(state=None))

    assert "state" not in callback_params(response.headers["location"])


async def test_repeated_parameters_last_value_wins(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    settings.consent = "approve"
    query = urlencode([*authorize_params(state=None).items(), ("state", "first"), ("state", "last")])

    response = await podio.get(f"/oauth/authorize?{query}")

    assert callback_params(response.headers["location"])["state"] == ["last"]


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://evil.example/callback",
        "http://127.0.0.1.evil.example/callback",
        "http://evil.127.0.0.1/callback",
        "http://127.0.0.1@evil.example/callback",
        "http://evil.example\\@127.0.0.1/callback",
        "http://127.0.0.1/callback#fragment",
        "http://127.0.0.1/caf\u00e9",
        "http://127.0.0.1:99999/callback",
        "javascript://127.0.0.1/%0aalert(1)",
        "/callback",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_off_domain_redirect_uri_is_refused_without_redirect(
    podio: httpx.AsyncClient, settings: SandboxSettings, redirect_uri: str, method: str
) -> None:
    settings.consent = "approve"
    params = authorize_params(redirect_uri=redirect_uri, decision="grant")

    if method == "GET":
        response = await podio.get("/oauth/authorize", params=params)
    else:
        response = await podio.post("/oauth/authorize", data=params)

    body = assert_error(response, 400, "invalid_request")
    assert "location" not in response.headers
    assert str(body["error_description"]).startswith("redirect_uri ")


@pytest.mark.parametrize(
    ("redirect_uri", "accepted"),
    [
        ("https://example.com/callback", True),
        ("http://app.example.com:8443/any/path", True),
        ("https://EXAMPLE.com/callback", True),
        ("https://notexample.com/callback", False),
        ("https://example.com.evil.test/callback", False),
    ],
)
async def test_redirect_uri_may_use_a_subdomain_and_any_port(
    podio: httpx.AsyncClient, settings: SandboxSettings, redirect_uri: str, accepted: bool
) -> None:
    settings.clients["other"] = RegisteredClient("other", "other-secret", "example.com")
    settings.consent = "approve"

    response = await podio.get(
        "/oauth/authorize", params=authorize_params(client_id="other", redirect_uri=redirect_uri)
    )

    assert response.status_code == (302 if accepted else 400)


async def test_unknown_client_is_refused_without_redirect(podio: httpx.AsyncClient) -> None:
    response = await podio.get("/oauth/authorize", params=authorize_params(client_id="nobody"))

    body = assert_error(response, 400, "invalid_request")
    assert body["error_description"] == "Unknown client_id 'nobody'"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": CHALLENGE, "code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": CHALLENGE}, "invalid_request"),
        ({"code_challenge": "short", "code_challenge_method": "S256"}, "invalid_request"),
        ({"scope": "user:read everything"}, "invalid_scope"),
    ],
)
async def test_bad_authorization_request_redirects_with_error(
    podio: httpx.AsyncClient, overrides: dict[str, str], error: str
) -> None:
    response = await podio.get("/oauth/authorize", params=authorize_params(**overrides))

    assert response.status_code == 302
    params = callback_params(response.headers["location"])
    assert params["error"] == [error]
    assert params["state"] == ["xyz"]


# The token endpoints


async def test_json_exchange_answers_like_podio(podio: httpx.AsyncClient, settings: SandboxSettings) -> None:
    code = await get_code(podio, settings)

    response = await token(podio, **exchange_fields(code))

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert list(body) == [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
        "ref",
    ]
    assert len(body["access_token"]) == 128
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 28_800
    assert body["scope"] == "user:read space:all"
    assert body["ref"] == {"type": "user", "id": 1001}


async def test_form_exchange_on_the_older_endpoint(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    code = await get_code(podio, settings, scope=None)

    response = await podio.post("/oauth/token", data=exchange_fields(code))

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "global:all"


async def test_granted_scope_setting_narrows_the_scope(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    settings.granted_scope = "user:read"
    code = await get_code(podio, settings)

    response = await token(podio, **exchange_fields(code))

    assert response.json()["scope"] == "user:read"


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/oauth/token/v2", {"data": {"grant_type": "password"}}),
        ("/oauth/token/v2", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("/oauth/token/v2", {"json": ["a", "list"]}),
        ("/oauth/token/v2", {"json": {"grant_type": "password", "username": None}}),
        ("/oauth/token", {"json": {"grant_type": "password"}}),
    ],
)
async def test_token_endpoint_refuses_the_wrong_body(
    podio: httpx.AsyncClient, state: SandboxState, path: str, kwargs: dict[str, object]
) -> None:
    response = await podio.post(path, **kwargs)  # type: ignore[arg-type]

    assert_error(response, 400, "invalid_request")
    [record] = state.token_requests()
    assert record.status == 400


async def test_http_basic_client_authentication(
    podio: httpx.AsyncClient, settings: SandboxSettings, state: SandboxState
) -> None:
    code = await get_code(podio, settings)
    fields = exchange_fields(code, client_id=None, client_secret=None)

    response = await podio.post("/oauth/token", data=fields, auth=(CLIENT_ID, CLIENT_SECRET))

    assert response.status_code == 200, response.text
    [record] = state.token_requests()
    assert record.client_auth == "basic"
    assert set(record.fields) == {"grant_type", "redirect_uri", "code"}


async def test_bad_client_secret_is_invalid_client(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    code = await get_code(podio, settings)
    basic = exchange_fields(code, client_id=None, client_secret=None)

    over_basic = await podio.post("/oauth/token", data=basic, auth=(CLIENT_ID, "wrong"))
    in_body = await token(podio, **exchange_fields(code, client_secret="wrong"))
    unknown = await token(podio, **exchange_fields(code, client_id="nobody"))

    assert_error(over_basic, 401, "invalid_client")
    assert over_basic.headers["www-authenticate"] == 'Basic realm="podio"'
    assert_error(in_body, 400, "invalid_client")
    assert_error(unknown, 400, "invalid_client")
    # Client authentication fails before the code is looked at: it is still good.
    assert (await token(podio, **exchange_fields(code))).status_code == 200


async def test_both_client_authentication_methods_at_once_are_refused(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    code = await get_code(podio, settings)

    response = await podio.post("/oauth/token", data=exchange_fields(code), auth=(CLIENT_ID, CLIENT_SECRET))

    assert_error(response, 400, "invalid_request")


async def test_code_is_single_use_and_replay_revokes_its_tokens(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    code = await get_code(podio, settings)
    first = await token(podio, **exchange_fields(code))
    access_token = first.json()["access_token"]
    assert (await user_status(podio, f"OAuth2 {access_token}")).status_code == 200

    replay = await token(podio, **exchange_fields(code))

    assert_error(replay, 400, "invalid_grant")
    assert code not in replay.text
    status = await user_status(podio, f"OAuth2 {access_token}")
    assert status.json()["error_description"] == "invalid_token"


async def test_expired_code_is_invalid_grant(
    podio: httpx.AsyncClient, settings: SandboxSettings, clock: FakeClock
) -> None:
    code = await get_code(podio, settings)
    clock.advance(settings.code_ttl)

    response = await token(podio, **exchange_fields(code))

    body = assert_error(response, 400, "invalid_grant")
    assert body["error_description"] == "The authorization code has expired"


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"code": "0" * 32}, "The authorization code is not valid"),
        ({"redirect_uri": REDIRECT_URI + "/"}, "redirect_uri differs"),
        ({"redirect_uri": REDIRECT_URI.replace("127.0.0.1", "localhost")}, "redirect_uri differs"),
        ({"code_verifier": VERIFIER}, "code_verifier sent for a code issued without"),
    ],
)
async def test_bad_exchange_is_invalid_grant(
    podio: httpx.AsyncClient,
    settings: SandboxSettings,
    overrides: dict[str, str],
    description: str,
) -> None:
    code = await get_code(podio, settings)

    response = await token(podio, **{**exchange_fields(code), **overrides})

    body = assert_error(response, 400, "invalid_grant")
    assert str(body["error_description"]).startswith(description)


async def test_code_of_another_client_is_invalid_grant(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    settings.clients["other"] = RegisteredClient("other", "other-secret", "127.0.0.1")
    code = await get_code(podio, settings)

    response = await token(podio, **exchange_fields(code, client_id="other", client_secret="other-secret"))

    assert_error(response, 400, "invalid_grant")


@pytest.mark.parametrize(
    ("verifier", "status"),
    [
        (VERIFIER, 200),
        (VERIFIER[:-1] + "l", 400),
        ("too-short", 400),
        (None, 400),
    ],
)
async def test_pkce_s256(
    podio: httpx.AsyncClient, settings: SandboxSettings, verifier: str | None, status: int
) -> None:
    code = await get_code(podio, settings, code_challenge=CHALLENGE, code_challenge_method="S256")

    response = await token(podio, **exchange_fields(code, code_verifier=verifier))

    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"] == "invalid_grant"


async def test_refresh_rotates_and_the_old_refresh_token_dies(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    tokens = (await password_grant(podio)).json()

    refreshed = await refresh(podio, tokens["refresh_token"])
    again = await refresh(podio, tokens["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    assert refreshed.json()["access_token"] != tokens["access_token"]
    assert_error(again, 400, "invalid_grant")
    assert (await refresh(podio, refreshed.json()["refresh_token"])).status_code == 200


async def test_refresh_without_rotation_keeps_the_refresh_token(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    settings.rotate_refresh_tokens = False
    tokens = (await password_grant(podio)).json()

    first = await refresh(podio, tokens["refresh_token"])
    second = await refresh(podio, tokens["refresh_token"])

    assert first.json()["refresh_token"] == tokens["refresh_token"]
    assert second.status_code == 200


async def test_unknown_or_expired_refresh_token_is_invalid_grant(
    podio: httpx.AsyncClient, settings: SandboxSettings, clock: FakeClock
) -> None:
    tokens = (await password_grant(podio)).json()
    clock.advance(settings.refresh_ttl)

    assert_error(await refresh(podio, "f" * 64), 400, "invalid_grant")
    assert_error(await refresh(podio, tokens["refresh_token"]), 400, "invalid_grant")


async def test_password_grant(podio: httpx.AsyncClient) -> None:
    good = await password_grant(podio)
    bad = await password_grant(podio, password="guess")

    assert good.json()["ref"] == {"type": "user", "id": 1001}
    assert good.json()["scope"] == "global:all"
    body = assert_error(bad, 400, "invalid_grant")
    assert "guess" not in json.dumps(body)


async def test_app_grant(podio: httpx.AsyncClient) -> None:
    fields = {"grant_type": "app", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}

    good = await podio.post(
        "/oauth/token", data={**fields, "app_id": "2002", "app_token": "sandbox-app-token"}
    )
    as_number = await podio.post(
        "/oauth/token/v2", json={**fields, "app_id": 2002, "app_token": "sandbox-app-token"}
    )
    bad = await token(podio, **fields, app_id="2002", app_token="wrong")

    assert good.json()["ref"] == {"type": "app", "id": 2002}
    assert as_number.status_code == 200
    assert_error(bad, 400, "invalid_grant")
    status = await user_status(podio, f"OAuth2 {good.json()['access_token']}")
    assert status.json()["ref"] == {"type": "app", "id": 2002}


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"grant_type": "authorization_code", "code": "c"}, "client_id, client_secret, redirect_uri"),
        (
            {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            "refresh_token",
        ),
        (
            {
                "grant_type": "password",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "username": "",
            },
            "username, password",
        ),
        (
            {"grant_type": "app", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "app_id": "1"},
            "app_token",
        ),
        ({"client_id": CLIENT_ID}, "grant_type"),
    ],
)
async def test_missing_field_is_named(podio: httpx.AsyncClient, fields: dict[str, str], missing: str) -> None:
    response = await token(podio, **fields)

    body = assert_error(response, 400, "invalid_request")
    assert body["error_description"] == f"Missing required field: {missing}"


async def test_unknown_grant_type(podio: httpx.AsyncClient) -> None:
    response = await token(podio, grant_type="client_credentials")

    assert_error(response, 400, "unsupported_grant_type")


async def test_error_envelope_describes_the_request(podio: httpx.AsyncClient) -> None:
    response = await podio.post("/oauth/token/v2?debug=1", json={})

    body = assert_error(response, 400, "invalid_request")
    assert body["error_detail"] is None
    assert body["error_parameters"] == {}
    assert body["error_propagate"] is False
    assert body["request"] == {
        "url": "http://sandbox/oauth/token/v2",
        "query_string": "debug=1",
        "method": "POST",
    }


# The protected resource


async def test_user_status_wants_the_oauth2_scheme(
    podio: httpx.AsyncClient, settings: SandboxSettings, clock: FakeClock
) -> None:
    access_token = (await password_grant(podio)).json()["access_token"]

    ok = await user_status(podio, f"OAuth2 {access_token}")
    bearer = await user_status(podio, f"Bearer {access_token}")
    unknown = await user_status(podio, "OAuth2 " + "0" * 128)
    clock.advance(settings.access_ttl)
    expired = await user_status(podio, f"OAuth2 {access_token}")

    assert ok.json()["user"] == {"user_id": 1001, "mail": "user@example.com"}
    assert_error(bearer, 401, "unauthorized")
    assert unknown.json()["error_description"] == "invalid_token"
    assert_error(expired, 401, "unauthorized")
    assert expired.json()["error_description"] == "expired_token"
    assert expired.headers["www-authenticate"] == 'Bearer realm="podio", error="expired_token"'


# The record and the /_sandbox/ routes


async def test_every_token_request_is_recorded_without_secrets(
    podio: httpx.AsyncClient, settings: SandboxSettings, state: SandboxState
) -> None:
    code = await get_code(podio, settings)
    assert state.token_requests() == []

    response = await token(podio, **exchange_fields(code))
    await token(podio, **exchange_fields(code))

    first, second = state.token_requests()
    assert first.path == "/oauth/token/v2"
    assert first.content_type == "application/json"
    assert first.grant_type == "authorization_code"
    assert first.client_auth == "body"
    assert (first.status, second.status) == (200, 400)
    assert set(first.fields) == {"grant_type", "client_id", "client_secret", "redirect_uri", "code"}
    assert first.fields["code"] == code
    for secret in (code, CLIENT_SECRET, response.json()["access_token"]):
        assert secret not in repr(first)
    assert fingerprint(code) in repr(first)

    listed = (await podio.get("/_sandbox/token-requests")).json()
    assert len(listed) == 2
    assert listed[0]["fields"] == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": fingerprint(CLIENT_SECRET),
        "redirect_uri": REDIRECT_URI,
        "code": fingerprint(code),
    }
    assert listed[0]["field_lengths"]["code"] == len(code)
    assert code not in json.dumps(listed)
    assert CLIENT_SECRET not in json.dumps(listed)


async def test_authorization_requests_are_not_token_requests(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    await get_code(podio, settings)
    await podio.get("/oauth/authorize", params=authorize_params(redirect_uri="http://evil.example/"))

    assert (await podio.get("/_sandbox/token-requests")).json() == []


async def test_admin_settings_change_and_validate(podio: httpx.AsyncClient) -> None:
    changed = await podio.post(
        "/_sandbox/settings", json={"consent": "approve", "rotate_refresh_tokens": False}
    )
    unknown = await podio.post("/_sandbox/settings", json={"clock": 0})
    invalid = await podio.post("/_sandbox/settings", json={"consent": "maybe", "code_ttl": 5})
    not_seconds = await podio.post("/_sandbox/settings", json={"code_ttl": True})

    assert changed.json()["consent"] == "approve"
    assert changed.json()["rotate_refresh_tokens"] is False
    assert changed.json()["clients"] == [{"client_id": CLIENT_ID, "registered_domain": "127.0.0.1"}]
    assert CLIENT_SECRET not in changed.text
    assert_error(unknown, 400, "invalid_request")
    assert_error(invalid, 400, "invalid_request")
    assert_error(not_seconds, 400, "invalid_request")
    current = (await podio.post("/_sandbox/settings")).json()
    assert current["code_ttl"] == 600, "a refused change applies nothing"
    authorize = await podio.get("/oauth/authorize", params=authorize_params())
    assert authorize.status_code == 302


async def test_admin_expire_and_reset(podio: httpx.AsyncClient) -> None:
    first = (await password_grant(podio)).json()["access_token"]
    second = (await password_grant(podio)).json()["access_token"]

    one = await podio.post("/_sandbox/expire", json={"access_token_fingerprint": fingerprint(first)})
    assert one.json() == {"expired": 1}
    assert (await user_status(podio, f"OAuth2 {first}")).status_code == 401
    assert (await user_status(podio, f"OAuth2 {second}")).status_code == 200

    every = await podio.post("/_sandbox/expire")
    assert every.json() == {"expired": 2}
    status = await user_status(podio, f"OAuth2 {second}")
    assert status.json()["error_description"] == "expired_token"

    reset = await podio.post("/_sandbox/reset")
    assert reset.status_code == 204
    assert (await podio.get("/_sandbox/token-requests")).json() == []
    status = await user_status(podio, f"OAuth2 {second}")
    assert status.json()["error_description"] == "invalid_token"


async def test_admin_expire_a_refresh_token(podio: httpx.AsyncClient) -> None:
    refresh_token = (await password_grant(podio)).json()["refresh_token"]

    await podio.post("/_sandbox/expire", json={"refresh_token_fingerprint": fingerprint(refresh_token)})

    assert_error(await refresh(podio, refresh_token), 400, "invalid_grant")


# The consent() helper


@pytest.mark.parametrize(("approve", "outcome"), [(True, "code"), (False, "error")])
async def test_consent_helper_at_the_consent_page(
    podio: httpx.AsyncClient, approve: bool, outcome: str
) -> None:
    url = httpx.URL("http://sandbox/oauth/authorize", params=authorize_params())

    location = await consent(podio, str(url), approve=approve)

    params = callback_params(location)
    assert location.startswith(REDIRECT_URI + "?")
    assert outcome in params
    assert params["state"] == ["xyz"]


@pytest.mark.parametrize(("mode", "outcome"), [("approve", "code"), ("deny", "error")])
async def test_consent_helper_when_the_sandbox_decides(
    podio: httpx.AsyncClient, settings: SandboxSettings, mode: str, outcome: str
) -> None:
    settings.consent = mode  # type: ignore[assignment]
    url = httpx.URL("http://sandbox/oauth/authorize", params=authorize_params())

    location = await consent(podio, str(url), approve=True)

    assert outcome in callback_params(location)


async def test_consent_helper_explains_an_unexpected_page(podio: httpx.AsyncClient) -> None:
    url = httpx.URL(
        "http://sandbox/oauth/authorize",
        params=authorize_params(redirect_uri="http://evil.example/"),
    )

    with pytest.raises(SandboxError, match="expected the consent page, got 400"):
        await consent(podio, str(url), approve=True)


# The server over loopback


async def test_server_serves_a_whole_flow_over_loopback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with SandboxServer() as server:
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=server.url) as client:
            url = httpx.URL(f"{server.url}/oauth/authorize", params=authorize_params())
            location = await consent(client, str(url), approve=True)
            code = callback_params(location)["code"][0]
            response = await client.post("/oauth/token/v2", json=exchange_fields(code))
            listed = (await client.get("/_sandbox/token-requests")).json()

        assert response.status_code == 200
        assert [record["grant_type"] for record in listed] == ["authorization_code"]
        assert len(server.state.token_requests()) == 1
        server_logs = [r for r in caplog.records if r.name.startswith(("uvicorn", "starlette"))]
        assert server_logs == [], "the sandbox logs nothing, least of all codes and tokens"

    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{server.port}/user/status")


def test_server_start_and_stop_are_explicit_too() -> None:
    settings = SandboxSettings(consent="deny")
    server = SandboxServer(settings)
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018
    server.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        response = httpx.get(
            f"{server.url}/oauth/authorize", params=authorize_params(), follow_redirects=False
        )
        assert "error=access_denied" in response.headers["location"]
    finally:
        server.stop()
    server.stop()  # stopping twice is harmless


@pytest.mark.slow  # a server in a subprocess
def test_serve_forever_prints_the_url_and_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-c", "from flowengine_sandbox.server import serve_forever; serve_forever()"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first_line = process.stdout.readline()  # printed once the server accepts connections
        url = first_line.split()[3]
        status = httpx.get(f"{url}/user/status")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        output = first_line + process.stdout.read()
        errors = process.stderr.read()

    assert output.startswith("Podio sandbox on http://127.0.0.1:")
    assert status.status_code == 401
    assert process.returncode == 0, errors
    assert "client_id sandbox-client: redirect URIs on 127.0.0.1" in output
    assert CLIENT_SECRET not in output + errors
    assert errors == ""


# Helpers that read better below the tests using them


async def password_grant(podio: httpx.AsyncClient, password: str = USER_PASSWORD) -> httpx.Response:
    return await token(
        podio,
        grant_type="password",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        username="user@example.com",
        password=password,
    )


async def refresh(podio: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await token(
        podio,
        grant_type="refresh_token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh_token,
    )


async def user_status(podio: httpx.AsyncClient, authorization: str) -> httpx.Response:
    return await podio.get("/user/status", headers={"Authorization": authorization})


async def test_basic_credentials_are_form_urlencoded(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    # RFC 6749 §2.3.1: the id and secret are form-urlencoded before base64.
    settings.clients["a:b"] = RegisteredClient("a:b", "s p", "127.0.0.1")
    credentials = base64.b64encode(b"a%3Ab:s+p").decode()

    response = await podio.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "user@example.com", "password": "sandbox-password"},
        headers={"Authorization": f"Basic {credentials}"},
    )

    assert response.status_code == 200, response.text


async def test_apps_registered_over_http_can_use_the_app_grant(podio: httpx.AsyncClient) -> None:
    registered = await podio.post(
        "/_sandbox/apps", json={"apps": {"3000": "token-3000", "3001": "token-3001"}}
    )
    assert registered.status_code == 200
    assert registered.json() == {"registered": 2, "apps": 3}
    fields = {"grant_type": "app", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    granted = await token(podio, **fields, app_id="3001", app_token="token-3001")
    assert granted.json()["ref"] == {"type": "app", "id": 3001}
    assert_error(await token(podio, **fields, app_id="3000", app_token="token-3001"), 400, "invalid_grant")
    for bad in ({"apps": {"x": "t"}}, {"apps": {"1": 5}}, {"apps": []}, {"apps": {}, "more": 1}):
        assert (await podio.post("/_sandbox/apps", json=bad)).status_code == 400, bad


# -- the trickle fault (SECURITY.md 24) -----------------------------------------------------------


async def test_a_trickle_is_set_over_http_like_any_fault(podio: httpx.AsyncClient) -> None:
    plan = {"faults": [{"kind": "trickle", "part": "headers", "interval": 0.5, "times": 1}]}
    shown = (await podio.post("/_sandbox/faults", json=plan)).json()
    assert shown["faults"][0] | {"part": "headers", "interval": 0.5, "stage": None} == shown["faults"][0]
    for bad in ({"kind": "trickle", "part": "footer"}, {"kind": "trickle", "interval": 0}):
        refused = await podio.post("/_sandbox/faults", json={"faults": [bad]})
        assert refused.status_code == 400, bad


async def test_a_trickled_body_arrives_whole_when_the_client_waits_for_it(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    settings.faults = FaultPlan([Fault("trickle", part="body", interval=0.001)])
    answer = await podio.post("/oauth/token", data={"grant_type": "password"})
    assert answer.json() is not None  # the endpoint's own answer, a byte at a time
    [record] = settings.faults.trickles.records()
    assert (record.part, record.client_left) == ("body", False)
    assert record.trickled == record.total == len(answer.content)


async def test_a_trickle_of_headers_needs_a_real_connection_and_says_so(
    podio: httpx.AsyncClient, settings: SandboxSettings
) -> None:
    settings.faults = FaultPlan([Fault("trickle", part="headers")])
    answer = await podio.post("/oauth/token", data={"grant_type": "password"})
    assert answer.status_code == 501 and "real connection" in answer.text
