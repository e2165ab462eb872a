"""The words of the spec language that reach real providers, through the public API.

Per-connection values, kept callback parameters, default scopes, ``{nonce}``,
parameters after ``#``, templates that can never be filled, and any token answer
a provider gives (nested fields, no token_type, expiry in ms or absolute, form and
query-string bodies). Each runs a flow through ``AsyncEngine`` with a
``MockTransport`` standing in for the provider.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flowengine import (
    AsyncEngine,
    CallbackError,
    Client,
    ConfigError,
    Flow,
    HttpRequest,
    HttpResponse,
    SpecError,
    Token,
    digest,
    load_spec,
)
from flowengine.testing import FakeClock, MockTransport, json_response

CLIENT = Client("cid", "csecret", "https://app.example.com/cb")
NOW = 1_700_000_000.0

BASE: dict[str, Any] = {
    "name": "acme",
    "endpoints": {
        "authorize": "https://auth.acme.example/oauth/authorize",
        "token": "https://auth.acme.example/oauth/token",
        "revoke": "https://auth.acme.example/oauth/revoke",
    },
    "authorization": {
        "params": {
            "response_type": "code",
            "client_id": "{client_id}",
            "redirect_uri": "{redirect_uri}",
            "scope": "{scope}",
            "state": "{state}",
        }
    },
    "grants": {
        "authorization_code": {
            "params": {
                "grant_type": "authorization_code",
                "client_id": "{client_id}",
                "client_secret": "{client_secret}",
                "redirect_uri": "{redirect_uri}",
                "code": "{code}",
            }
        },
        "refresh_token": {
            "params": {
                "grant_type": "refresh_token",
                "client_id": "{client_id}",
                "client_secret": "{client_secret}",
                "refresh_token": "{refresh_token}",
            }
        },
    },
    "revocation": {
        "endpoint": "revoke",
        "params": {"token": "{token}", "client_id": "{client_id}", "client_secret": "{client_secret}"},
    },
}

TOKEN = {"access_token": "at-1", "token_type": "bearer", "expires_in": 3600, "refresh_token": "rt-1"}


def spec_with(change: Callable[[dict[str, Any]], None] | None = None) -> Any:
    data = copy.deepcopy(BASE)
    if change is not None:
        change(data)
    return load_spec(data)


def problems(change: Callable[[dict[str, Any]], None]) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec_with(change)
    return [f"{p.path}: {p.message}" for p in info.value.problems]


class Provider:
    """A MockTransport handler answering every token request with ``answer``; keeps the requests."""

    def __init__(self, answer: HttpResponse | None = None) -> None:
        self.answer = answer or json_response(TOKEN)
        self.transport = MockTransport(self)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.answer

    @property
    def sent(self) -> list[HttpRequest]:
        return self.transport.sent


def engine(spec: Any, provider: Provider, **options: Any) -> AsyncEngine:
    return AsyncEngine(spec, client=CLIENT, transport=provider.transport, clock=FakeClock(NOW), **options)


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def callback_for(flow: Flow, **extra: str) -> str:
    assert flow.authorization_url is not None
    state = query(flow.authorization_url)["state"]
    params = {"code": "the-code", "state": state, **extra}
    return "https://app.example.com/cb?" + "&".join(f"{k}={v}" for k, v in params.items())


async def run_flow(spec: Any, provider: Provider, **start: Any) -> tuple[Flow, Token | None, AsyncEngine]:
    eng = engine(spec, provider)
    flow = await eng.start(**start)
    done = await eng.callback(callback_for(flow))
    return done, await eng.token_for(done), eng


# --- default scopes, nonce, parameters after # ---------------------------------------------


async def test_default_scopes_are_asked_for_when_start_names_none() -> None:
    spec = spec_with(
        lambda d: d["authorization"].update(default_scopes=["read", "write"], scope_separator=",")
    )
    eng = engine(spec, Provider())
    flow = await eng.start()
    assert query(flow.authorization_url or "")["scope"] == "read,write"
    assert flow.scope == "read,write"
    other = await eng.start(scope=["admin"])
    assert query(other.authorization_url or "")["scope"] == "admin"


async def test_nonce_is_random_per_flow_and_only_its_digest_is_kept() -> None:
    spec = spec_with(lambda d: d["authorization"]["params"].update(nonce="{nonce}"))
    eng = engine(spec, Provider())
    first, second = await eng.start(), await eng.start()
    nonce = query(first.authorization_url or "")["nonce"]
    assert len(nonce) >= 43 and nonce != query(second.authorization_url or "")["nonce"]
    stored = await eng.get(first.id)
    assert stored is not None and stored.nonce_hash == digest(nonce)
    assert nonce not in repr(stored) and nonce not in json.dumps(stored.connection)


async def test_a_spec_without_nonce_keeps_no_nonce_digest() -> None:
    flow = await engine(spec_with(), Provider()).start()
    assert flow.nonce_hash is None and "nonce" not in query(flow.authorization_url or "")


async def test_parameters_after_the_fragment_for_a_single_page_authorize_url() -> None:
    def apollo(d: dict[str, Any]) -> None:
        d["endpoints"]["authorize"] = "https://app.acme.example/#/oauth/authorize"
        d["authorization"]["params_in"] = "fragment"

    flow = await engine(spec_with(apollo), Provider()).start(scope="read")
    url = flow.authorization_url or ""
    assert url.startswith("https://app.acme.example/#/oauth/authorize?response_type=code&client_id=cid&")
    assert dict(parse_qsl(urlsplit(url).fragment.partition("?")[2]))["scope"] == "read"


def test_a_fragment_stays_refused_in_every_other_endpoint() -> None:
    def fragment_in_token(d: dict[str, Any]) -> None:
        d["endpoints"]["token"] = "https://auth.acme.example/oauth/token#x"
        d["authorization"]["params_in"] = "fragment"

    assert any(
        p.startswith("$.endpoints.token: an endpoint must not have a fragment")
        for p in problems(fragment_in_token)
    )
    assert any(
        p.startswith("$.endpoints.authorize: an endpoint must not have a fragment")
        for p in problems(lambda d: d["endpoints"].update(authorize="https://a.example/#/x"))
    )


# --- templates that can never be filled ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["grants"]["refresh_token"]["params"].update(scope="{scope}"),
            "$.grants.refresh_token.params.scope: {scope} never has a value in a refresh request",
        ),
        (
            lambda d: d["authorization"]["params"].update(secret="{client_secret}"),
            "$.authorization.params.secret: {client_secret} never has a value in the authorization request",
        ),
        (
            lambda d: d["authorization"]["params"].update(code_challenge="{code_challenge}"),
            "$.authorization.params.code_challenge: {code_challenge} never has a value",
        ),
        (
            lambda d: d["grants"]["authorization_code"]["params"].update(hint="{login_hint}"),
            "$.grants.authorization_code.params.hint: template names unknown variable 'login_hint'",
        ),
        (
            lambda d: (
                d.update(inputs=["login_hint"]),
                d["grants"]["refresh_token"]["params"].update(h="{login_hint}"),
            ),
            "$.grants.refresh_token.params.h: {login_hint} never has a value in a refresh request",
        ),
        (
            lambda d: d["endpoints"].update(token="https://{subdomain}.acme.example/token"),
            "$.endpoints.token: {subdomain} names no connection variable or kept callback parameter",
        ),
    ],
    ids=[
        "scope-in-refresh",
        "secret-in-authorize",
        "pkce-off",
        "undeclared-input",
        "input-in-refresh",
        "brace",
    ],
)
def test_a_template_that_can_never_be_filled_is_spec_invalid(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    assert any(line.startswith(expected) for line in problems(change)), problems(change)


def test_literal_braces_are_still_written_doubled() -> None:
    spec = spec_with(lambda d: d["authorization"]["params"].update(claims='{{"id_token":null}}'))
    assert spec.authorization is not None


# --- per-connection values ----------------------------------------------------------------------------


def zendesk(d: dict[str, Any]) -> None:
    d["connection"] = {
        "subdomain": {
            "pattern": r"(?:https://)?([a-z0-9][a-z0-9-]{0,62})(?:\.zendesk\.com/?)?",
            "description": "your Zendesk subdomain",
            "example": "acme",
        }
    }
    d["endpoints"] = {
        "authorize": "https://{subdomain}.zendesk.com/oauth/authorizations/new",
        "token": "https://{subdomain}.zendesk.com/oauth/tokens",
        "revoke": "https://{subdomain}.zendesk.com/oauth/revoke",
    }
    d["authorization"]["params"]["tenant"] = "{subdomain}"


async def test_connection_values_fill_endpoints_and_parameters_and_bind_the_flow() -> None:
    provider = Provider()
    flow, token, eng = await run_flow(spec_with(zendesk), provider, connection={"subdomain": "acme"})
    assert (flow.authorization_url or "") == ""  # a stored flow never has the URL
    assert flow.connection == {"subdomain": "acme"}
    assert flow.endpoints["token"] == "https://acme.zendesk.com/oauth/tokens"
    assert provider.sent[0].url == "https://acme.zendesk.com/oauth/tokens"
    assert token is not None and token.connection == {"subdomain": "acme"}
    assert token.key.startswith("acme@acme:")
    refreshed = await eng.refresh(token)
    assert provider.sent[-1].url == "https://acme.zendesk.com/oauth/tokens"
    assert refreshed.key == token.key
    await eng.revoke(refreshed)
    assert provider.sent[-1].url == "https://acme.zendesk.com/oauth/revoke"


async def test_the_authorization_url_carries_the_tenant() -> None:
    flow = await engine(spec_with(zendesk), Provider()).start(
        connection={"subdomain": "https://beta.zendesk.com"}
    )
    assert (flow.authorization_url or "").startswith("https://beta.zendesk.com/oauth/authorizations/new?")
    assert query(flow.authorization_url or "")["tenant"] == "beta"  # the pattern's group is the value


@pytest.mark.parametrize(
    "connection",
    [None, {}, {"subdomain": "evil.com/x?"}, {"subdomain": "a" * 300}, {"subdomain": "acme", "region": "eu"}],
    ids=["none", "empty", "not-matching", "too-long", "undeclared"],
)
async def test_bad_connection_values_are_refused_before_anything(connection: dict[str, str] | None) -> None:
    provider = Provider()
    eng = engine(spec_with(zendesk), provider)
    with pytest.raises(ConfigError) as info:
        await eng.start(connection=connection)
    assert info.value.code == "connection_invalid"
    assert await eng.flows() == [] and provider.sent == []


async def test_a_lax_pattern_cannot_turn_a_tenant_into_another_host() -> None:
    def lax(d: dict[str, Any]) -> None:
        zendesk(d)
        d["connection"]["subdomain"]["pattern"] = ".+"
        d["connection"]["subdomain"]["example"] = "acme"

    eng = engine(spec_with(lax), Provider())
    for hostile in ("evil.example/", "evil.example#", "x@evil.example", "x\\evil.example", "a b"):
        with pytest.raises(ConfigError) as info:
            await eng.start(connection={"subdomain": hostile})
        assert info.value.code == "connection_invalid"


async def test_tokens_of_two_tenants_never_share_a_key() -> None:
    provider = Provider(json_response({**TOKEN, "user": {"id": 7}}))
    spec = spec_with(
        lambda d: (zendesk(d), d.update(token={"account": {"id": "user.id", "default_type": "user"}}))
    )
    eng = engine(spec, provider)
    tokens = []
    for tenant in ("acme", "beta"):
        flow = await eng.start(connection={"subdomain": tenant})
        done = await eng.callback(callback_for(flow))
        tokens.append(await eng.token_for(done))
    assert [t.key for t in tokens if t] == ["acme@acme:user:7", "acme@beta:user:7"]
    assert len(await eng.tokens()) == 2


async def test_grants_take_connection_values_and_a_scope() -> None:
    def client_credentials(d: dict[str, Any]) -> None:
        zendesk(d)
        d["grants"]["client_credentials"] = {
            "params": {"grant_type": "client_credentials", "scope": "{scope}", "site": "{subdomain}"}
        }

    provider = Provider()
    token = await engine(spec_with(client_credentials), provider).grant(
        "client_credentials", connection={"subdomain": "acme"}, scope="read"
    )
    assert provider.sent[0].url == "https://acme.zendesk.com/oauth/tokens"
    assert dict(parse_qsl(provider.sent[0].body.decode())) == {
        "grant_type": "client_credentials",
        "scope": "read",
        "site": "acme",
    }
    assert token.connection == {"subdomain": "acme"}


def test_an_endpoint_may_not_use_a_kept_value_before_the_callback() -> None:
    def early(d: dict[str, Any]) -> None:
        d["callback"] = {"keep": ["realmId"]}
        d["endpoints"]["authorize"] = "https://{realmId}.acme.example/authorize"

    assert any("has no value yet when this endpoint is used" in p for p in problems(early))


# --- kept callback parameters -----------------------------------------------------------------------


def zoho(d: dict[str, Any]) -> None:
    d["endpoints"]["token"] = "https://{accounts}/oauth/v2/token"
    d["endpoints"]["revoke"] = "https://{accounts}/oauth/v2/token/revoke"
    d["callback"] = {
        "keep": {
            "accounts": {
                "param": "accounts-server",
                "pattern": r"https://(accounts\.zoho\.(?:com|eu|in|com\.au|jp))",
                "example": "https://accounts.zoho.com",
            },
            "location": {"pattern": "[a-z]{2}", "default": "us"},
        }
    }


async def test_a_kept_parameter_picks_the_token_host_through_its_allow_list() -> None:
    provider = Provider()
    eng = engine(spec_with(zoho), provider)
    flow = await eng.start()
    done = await eng.callback(
        callback_for(flow, **{"accounts-server": "https://accounts.zoho.eu", "location": "eu"})
    )
    assert done.kept == {"accounts": "accounts.zoho.eu", "location": "eu"}
    assert provider.sent[0].url == "https://accounts.zoho.eu/oauth/v2/token"
    token = await eng.token_for(done)
    assert token is not None and token.kept == done.kept
    await eng.refresh(token)
    assert provider.sent[-1].url == "https://accounts.zoho.eu/oauth/v2/token"


@pytest.mark.parametrize(
    "server", ["https://evil.example", "https://accounts.zoho.eu.evil.example", "https://accounts.zoho.eu/x"]
)
async def test_a_kept_parameter_off_its_pattern_is_refused_and_nothing_is_sent(server: str) -> None:
    provider = Provider()
    eng = engine(spec_with(zoho), provider)
    flow = await eng.start()
    with pytest.raises(CallbackError) as info:
        await eng.callback(callback_for(flow, **{"accounts-server": server}))
    assert info.value.code == "callback_invalid" and provider.sent == []
    stored = await eng.get(flow.id)
    assert stored is not None and stored.state == "redirected"


async def test_a_missing_kept_parameter_refuses_a_code_but_not_a_denial() -> None:
    provider = Provider()
    eng = engine(spec_with(zoho), provider)
    flow = await eng.start()
    with pytest.raises(CallbackError):
        await eng.callback(callback_for(flow))
    state = query(flow.authorization_url or "")["state"]
    denied = await eng.callback({"error": "access_denied", "state": state})
    assert denied.outcome == "denied" and provider.sent == []


async def test_kept_values_are_shown_on_the_flow_and_usable_in_the_exchange() -> None:
    def quickbooks(d: dict[str, Any]) -> None:
        d["callback"] = {"keep": ["realmId"]}
        d["grants"]["authorization_code"]["params"]["realm"] = "{realmId}"

    provider = Provider()
    eng = engine(spec_with(quickbooks), provider)
    flow = await eng.start()
    done = await eng.callback(callback_for(flow, realmId="4620816365"))
    assert done.kept == {"realmId": "4620816365"}
    assert dict(parse_qsl(provider.sent[0].body.decode()))["realm"] == "4620816365"
    token = await eng.token_for(done)
    assert token is not None and token.key.startswith("acme@4620816365:")


# --- any token answer -------------------------------------------------------------------------------------


def answer(body: bytes, content_type: str, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"content-type": content_type}, body)


@pytest.mark.parametrize(
    ("rules", "response", "expected"),
    [
        (
            {
                "access_token": "authed_user.access_token",
                "token_type": "authed_user.token_type",
                "scope": "authed_user.scope",
                "account": {"id": "authed_user.id", "default_type": "user"},
            },
            json_response(
                {
                    "ok": True,
                    "authed_user": {
                        "id": "U1",
                        "scope": "chat:write",
                        "access_token": "xoxp-1",
                        "token_type": "user",
                    },
                }
            ),
            {"access_token": "xoxp-1", "scope": "chat:write", "account": "user:U1", "token_type": "user"},
        ),
        (
            {
                "access_token": "data.access_token",
                "expires_in": "data.expires_in",
                "refresh_token": "data.refresh_token",
                "default_token_type": "Bearer",
            },
            json_response({"data": {"access_token": "act.1", "expires_in": 86400, "refresh_token": "rft.1"}}),
            {"access_token": "act.1", "expires_at": NOW + 86400 - 60, "token_type": "Bearer"},
        ),
        (
            {"default_token_type": "bearer"},
            json_response({"access_token": "shpat_1", "scope": "read_orders"}),
            {"access_token": "shpat_1", "token_type": "bearer", "expires_at": None},
        ),
        (
            {"expires_in_unit": "milliseconds"},
            json_response({**TOKEN, "expires_in": 3_600_000}),
            {"expires_at": NOW + 3600 - 60},
        ),
        (
            {"expires_at": "expires_at"},
            json_response({**TOKEN, "expires_at": int(NOW) + 7200}),
            {"expires_at": NOW + 7200 - 60},
        ),
        (
            {"expires_at": "expiry"},
            json_response({**TOKEN, "expiry": "2023-11-14T23:13:20+00:00"}),
            {"expires_at": NOW + 3600 - 60},
        ),
        (
            {},
            answer(
                b"access_token=gho_16C7&scope=repo%2Cgist&token_type=bearer",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            {"access_token": "gho_16C7", "scope": "repo,gist", "expires_at": None},
        ),
        (
            {},
            answer(b"access_token=abc&token_type=bearer&expires_in=60", "text/plain"),
            {"access_token": "abc", "expires_at": NOW + 30},
        ),
    ],
    ids=[
        "slack-nested",
        "tiktok-data",
        "shopify-no-type",
        "milliseconds",
        "epoch",
        "iso",
        "github-form",
        "text-query",
    ],
)
async def test_any_token_answer_a_provider_gives(
    rules: dict[str, Any], response: HttpResponse, expected: dict[str, Any]
) -> None:
    spec = spec_with(lambda d: d.update(token={**rules, "token_types": ["bearer", "user"]}))
    flow, token, _eng = await run_flow(spec, Provider(response))
    assert flow.outcome == "granted", flow.error
    assert token is not None
    for name, value in expected.items():
        got = str(token.account) if name == "account" else getattr(token, name)
        assert got == value, name


async def test_nested_secrets_do_not_stay_in_extra() -> None:
    rules = {
        "access_token": "authed_user.access_token",
        "token_types": ["bearer"],
        "default_token_type": "bearer",
    }
    body = {"ok": True, "authed_user": {"id": "U1", "access_token": "xoxp-SECRET"}, "team": {"id": "T1"}}
    _flow, token, _eng = await run_flow(
        spec_with(lambda d: d.update(token=rules)), Provider(json_response(body))
    )
    assert token is not None and token.extra == {
        "ok": True,
        "authed_user": {"id": "U1"},
        "team": {"id": "T1"},
    }


@pytest.mark.parametrize(
    "response",
    [
        answer(b"<html>error</html>", "text/html"),
        answer(b"access_token=a&access_token=b&token_type=bearer", "application/x-www-form-urlencoded"),
        json_response({"access_token": "at", "token_type": "bearer", "expires_at": "tomorrow"}),
        json_response({"access_token": "at"}),
    ],
    ids=["html", "repeated-form-field", "expires-at-nonsense", "no-type-no-default"],
)
async def test_answers_that_are_no_token_fail_the_flow_typed(response: HttpResponse) -> None:
    spec = spec_with(lambda d: d.update(token={"expires_at": "expires_at"}))
    flow, token, _eng = await run_flow(spec, Provider(response))
    assert flow.outcome == "failed" and token is None
    assert flow.error is not None and flow.error.code == "invalid_token_response"


async def test_a_form_error_answer_is_the_providers_error() -> None:
    body = b"error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired."
    flow, _token, _eng = await run_flow(
        spec_with(), Provider(answer(body, "application/x-www-form-urlencoded"))
    )
    assert flow.error is not None
    assert (flow.error.code, flow.error.provider_error) == ("provider_error", "bad_verification_code")


def test_a_default_token_type_must_be_an_accepted_one() -> None:
    assert "$.token.default_token_type: 'mac' is not one of token_types" in problems(
        lambda d: d.update(token={"default_token_type": "mac"})
    )


def fhir(d: dict[str, Any]) -> None:
    d["connection"] = {
        "base": {
            "pattern": r"[a-zA-Z0-9.-]+\.patientfusion\.com/.*",
            "example": "api.patientfusion.com/fhir/",
        },
        "launch": {"pattern": "[A-Za-z0-9-]+", "required": False},
    }
    d["endpoints"]["authorize"] = "https://{base}/authorize"
    d["endpoints"]["token"] = "https://{base}/token"
    d["authorization"]["params"]["launch"] = "{launch}"


async def test_a_value_may_extend_a_path_but_never_change_the_host() -> None:
    eng = engine(spec_with(fhir), Provider())
    flow = await eng.start(connection={"base": "api.patientfusion.com/fhir/r4/v1/118b"})
    assert (flow.authorization_url or "").startswith(
        "https://api.patientfusion.com/fhir/r4/v1/118b/authorize?"
    )
    assert "launch" not in query(flow.authorization_url or "")  # optional, not given: left out
    with_launch = await eng.start(connection={"base": "api.patientfusion.com/x", "launch": "abc"})
    assert query(with_launch.authorization_url or "")["launch"] == "abc"

    def lax(d: dict[str, Any]) -> None:
        zendesk(d)
        d["connection"]["subdomain"]["pattern"] = ".+"

    with pytest.raises(ConfigError) as info:
        await engine(spec_with(lax), Provider()).start(connection={"subdomain": "evil.example/x"})
    assert info.value.code == "connection_invalid"


def test_an_optional_connection_variable_cannot_be_part_of_an_endpoint() -> None:
    def optional_host(d: dict[str, Any]) -> None:
        zendesk(d)
        d["connection"]["subdomain"]["required"] = False

    assert any("is optional: an endpoint cannot do without it" in p for p in problems(optional_host))


async def test_unescaped_parameters_keep_their_colons_and_commas_but_cannot_add_a_parameter() -> None:
    spec = spec_with(lambda d: d["authorization"].update(unescaped=["scope"], scope_separator=","))
    flow = await engine(spec, Provider()).start(scope=["user:read", "repo&admin=1"])
    raw_query = urlsplit(flow.authorization_url or "").query
    assert "scope=user:read,repo%26admin%3D1&" in raw_query
    assert query(flow.authorization_url or "")["scope"] == "user:read,repo&admin=1"
    assert "unescaped" in problems(lambda d: d["authorization"].update(unescaped=["scopes"]))[0]
