"""The security primitives (SECURITY.md 1, 2, 6, 10, 13): state, PKCE, redirect URIs,
digests, redaction, secret-free reprs, and reading callbacks.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import string
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import pytest
import yaml
from flowengine import (
    AccountRef,
    AsyncEngine,
    CallbackError,
    Client,
    ConfigError,
    Flow,
    FlowSpec,
    HttpRequest,
    Token,
    load_spec,
)
from flowengine import _security as security_module
from flowengine._callbacks import (
    MAX_CALLBACK_LENGTH,
    MAX_PARAMETERS,
    CallbackParams,
    callback_error,
    parse_callback,
)
from flowengine._entropy import flow_secrets
from flowengine._security import (
    SECRET_FIELDS,
    check_redirect_uri,
    digest,
    digests_equal,
    fingerprint,
    is_loopback,
    pkce_challenge,
    redact,
)
from flowengine._spec import CallbackRules
from flowengine.testing import MockTransport, json_response

BASE64URL = frozenset(string.ascii_letters + string.digits + "-_")
# RFC 7636 §4.1: unreserved characters.
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
RFC7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

ACCESS_TOKEN = "at-SECRET-" + "a" * 118
REFRESH_TOKEN = "rt-SECRET-refresh"
CLIENT_SECRET = "cs-SECRET-client"
CODE = "code-SECRET-42"
VERIFIER = "cv-SECRET-" + "v" * 40
STATE = "st-SECRET-state"
SECRETS = (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, CODE, VERIFIER, STATE)
NOW = 1_700_000_000.0


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {text!r}"


# --- SEC 1: state ----------------------------------------------------------------------------------


def new_state() -> str:
    """A ``state`` as the engine draws it for a new flow."""
    return flow_secrets(pkce=False).state


def new_verifier() -> str:
    """A PKCE verifier as the engine draws it for a new flow."""
    verifier = flow_secrets(pkce=True).verifier
    assert verifier is not None
    return verifier


def _decoded_bits(value: str) -> int:
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return len(raw) * 8


def test_sec1_ten_thousand_states_are_unique() -> None:
    states = [new_state() for _ in range(10_000)]
    assert len(set(states)) == 10_000


def test_sec1_state_carries_at_least_128_random_bits() -> None:
    for state in (new_state() for _ in range(1_000)):
        assert set(state) <= BASE64URL, state
        assert len(state) >= 22  # 22 base64url characters = 132 bits
        assert _decoded_bits(state) >= 128


def test_sec1_state_characters_are_spread_over_the_whole_alphabet() -> None:
    """A smoke test of randomness: every base64url character shows up, none dominates."""
    counts = Counter("".join(new_state() for _ in range(2_000)))
    assert set(counts) == BASE64URL
    expected = sum(counts.values()) / 64
    assert max(counts.values()) < 1.5 * expected
    assert min(counts.values()) > 0.5 * expected


def test_sec1_state_is_url_safe_as_it_is() -> None:
    state = new_state()
    assert dict(parse_qsl(f"state={state}")) == {"state": state}


def test_sec1_states_are_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = security_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security_module.hmac, "compare_digest", spy)
    a, b = digest("one"), digest("two")
    assert digests_equal(a, a) is True
    assert digests_equal(a, b) is False
    assert len(calls) == 2


def test_sec1_digests_equal() -> None:
    a = digest("state-value")
    assert digests_equal(a, digest("state-value")) is True
    assert digests_equal(a, digest("state-valuf")) is False
    assert digests_equal(a, a[:-1]) is False
    assert digests_equal(a, a.upper()) is False
    assert digests_equal(a, "") is False
    assert digests_equal(None, a) is False
    assert digests_equal(a, None) is False
    assert digests_equal(None, None) is False


def test_sec1_digest_is_sha256_hex() -> None:
    assert digest("abc") == hashlib.sha256(b"abc").hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest(new_state()))
    # Lone surrogates (from a badly decoded query) digest instead of raising.
    assert len(digest("\udcff")) == 64


# --- SEC 2: PKCE ------------------------------------------------------------------------------------


def test_sec2_rfc7636_appendix_b_vector() -> None:
    assert pkce_challenge(RFC7636_VERIFIER) == RFC7636_CHALLENGE


def _reference_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, written out independently of flowengine."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


def test_sec2_challenge_matches_an_independent_s256() -> None:
    for _ in range(200):
        verifier = "".join(secrets.choice(sorted(UNRESERVED)) for _ in range(secrets.choice(range(43, 129))))
        challenge = pkce_challenge(verifier)
        assert challenge == _reference_challenge(verifier)
        assert len(challenge) == 43
        assert set(challenge) <= BASE64URL  # unpadded base64url
        assert challenge != verifier  # never plain


def test_sec2_challenge_matches_oauthlib() -> None:
    authorization_code = pytest.importorskip(
        "oauthlib.oauth2.rfc6749.grant_types.authorization_code",
        reason="oauthlib is not installed (add it to the dev dependencies to cross-check PKCE)",
    )
    assert authorization_code.code_challenge_method_s256(RFC7636_VERIFIER, RFC7636_CHALLENGE)
    for _ in range(200):
        verifier = new_verifier()
        assert authorization_code.code_challenge_method_s256(verifier, pkce_challenge(verifier))


def test_sec2_verifier_follows_rfc7636() -> None:
    verifiers = [new_verifier() for _ in range(1_000)]
    assert len(set(verifiers)) == len(verifiers)
    for verifier in verifiers:
        assert 43 <= len(verifier) <= 128
        assert set(verifier) <= UNRESERVED
        assert _decoded_bits(verifier) >= 256


def _pkce_podio() -> FlowSpec:
    data = copy.deepcopy(_podio_data())
    data["pkce"] = True
    data["authorization"]["params"]["code_challenge"] = "{code_challenge}"
    data["authorization"]["params"]["code_challenge_method"] = "{code_challenge_method}"
    data["grants"]["authorization_code"]["params"]["code_verifier"] = "{code_verifier}"
    return load_spec(data)


def _podio_data() -> dict[str, Any]:
    spec = load_spec("podio")
    with open(spec.source, encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


def RecordingTransport() -> MockTransport:
    """Answers every request with Podio's token response; ``sent`` keeps the requests."""
    body = {
        "access_token": ACCESS_TOKEN,
        "token_type": "bearer",
        "expires_in": 28800,
        "refresh_token": REFRESH_TOKEN,
        "scope": "global:all",
        "ref": {"type": "user", "id": 7},
    }
    return MockTransport(lambda _request: json_response(body))


async def test_sec2_engine_sends_s256_and_the_matching_verifier() -> None:
    transport = RecordingTransport()
    client = Client("cid", CLIENT_SECRET, "https://app.example.com/callback")
    engine = AsyncEngine(_pkce_podio(), client=client, transport=transport, clock=lambda: NOW)
    flow = await engine.start()
    assert flow.authorization_url is not None
    query = dict(parse_qsl(urlsplit(flow.authorization_url).query))
    assert query["code_challenge_method"] == "S256"
    assert flow.code_verifier is not None
    assert query["code_challenge"] == pkce_challenge(flow.code_verifier)
    assert query["code_challenge"] != flow.code_verifier
    await engine.callback(f"https://app.example.com/callback?code=abc&state={query['state']}")
    (request,) = transport.sent
    assert json.loads(request.body)["code_verifier"] == flow.code_verifier


async def test_sec2_no_pkce_parameters_when_the_spec_has_none() -> None:
    engine = AsyncEngine(
        "podio",
        client=Client("cid", CLIENT_SECRET, "https://app.example.com/callback"),
        transport=RecordingTransport(),
    )
    flow = await engine.start()
    assert flow.authorization_url is not None
    query = dict(parse_qsl(urlsplit(flow.authorization_url).query))
    assert not {"code_challenge", "code_challenge_method"} & set(query)
    assert flow.code_verifier is None


# --- SEC 10: redirect URIs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "domain"),
    [
        ("https://example.com/callback", "example.com"),
        ("https://app.example.com/callback", "example.com"),
        ("https://a.b.example.com/deep/path?x=1", "example.com"),
        ("https://example.com:8443/any/path", "example.com"),
        ("https://EXAMPLE.com/callback", "example.com"),
        ("https://example.com/callback", "Example.COM"),
        ("https://example.com/callback", "example.com."),
        ("HTTPS://example.com/callback", "example.com"),
        ("https://app.example.com/callback", "app.example.com"),
        ("https://anything.example/callback", None),
        ("http://127.0.0.1:8765/callback", None),
        ("http://127.0.0.2/callback", None),
        ("http://localhost:8765/callback", None),
        ("http://LOCALHOST/callback", None),
        ("http://[::1]:8765/callback", None),
    ],
)
def test_sec10_redirect_uri_accepted(uri: str, domain: str | None) -> None:
    check_redirect_uri(uri, registered_domain=domain)


@pytest.mark.parametrize(
    ("uri", "domain"),
    [
        pytest.param("https://evil.net/callback", "example.com", id="off-domain"),
        pytest.param("https://evilexample.com/callback", "example.com", id="suffix-not-subdomain"),
        pytest.param("https://example.com.evil.net/callback", "example.com", id="domain-as-prefix"),
        pytest.param("https://example.com@evil.net/callback", "example.com", id="userinfo"),
        pytest.param("https://evil.net/callback?r=example.com", "example.com", id="domain-in-query"),
        pytest.param("https://evil.net/example.com", "example.com", id="domain-in-path"),
        pytest.param("https://example.com/callback", "app.example.com", id="parent-of-registered"),
        pytest.param("https://example.com%2Eevil.net/callback", "example.com", id="encoded-dot"),
        pytest.param("http://127.0.0.1:8765/callback", "example.com", id="loopback-off-domain"),
        pytest.param("http://example.com/callback", "example.com", id="http-off-loopback"),
        pytest.param("http://example.com/callback", None, id="http-no-domain"),
        pytest.param("http://10.0.0.1/callback", None, id="http-private-ip"),
        pytest.param("http://localhost.evil.net/callback", None, id="http-localhost-prefix"),
        pytest.param("https://example.com/callback#frag", "example.com", id="fragment"),
        pytest.param(
            "https://example.com/callback#",
            None,
            id="empty-fragment",
        ),
        pytest.param("/callback", None, id="relative"),
        pytest.param("callback", None, id="bare-word"),
        pytest.param("//example.com/callback", "example.com", id="scheme-relative"),
        pytest.param("ftp://example.com/callback", "example.com", id="ftp"),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param("com.example.app:/callback", None, id="custom-scheme"),
        pytest.param("https:///callback", None, id="no-host"),
        pytest.param("", None, id="empty"),
        pytest.param(
            "https://evil.net\\@example.com/callback",
            "example.com",
            id="backslash-parser-differential",
        ),
        pytest.param(
            "https://example.com:abc/callback",
            "example.com",
            id="bad-port",
        ),
        pytest.param(
            "https://example.com:99999/callback",
            "example.com",
            id="port-out-of-range",
        ),
    ],
)
def test_sec10_redirect_uri_refused(uri: str, domain: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        check_redirect_uri(uri, registered_domain=domain)
    assert info.value.code == "redirect_uri_invalid"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("localhost.evil.net", False),
        ("example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_sec10_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_sec10_off_domain_redirect_uri_is_refused_before_any_redirect() -> None:
    transport = RecordingTransport()
    client = Client("cid", CLIENT_SECRET, "https://evil.net/callback", registered_domain="example.com")
    engine = AsyncEngine("podio", client=client, transport=transport)
    with pytest.raises(ConfigError) as info:
        await engine.start()
    assert info.value.code == "redirect_uri_invalid"
    with pytest.raises(ConfigError):
        await engine.start(redirect_uri="https://example.com.evil.net/callback")
    assert transport.sent == []


async def test_sec10_token_request_redirect_uri_is_byte_identical() -> None:
    transport = RecordingTransport()
    redirect_uri = "https://app.example.com/cb/%7Euser?next=/a%2Fb&x=1+2&e=%C3%A9"
    client = Client("cid", CLIENT_SECRET, redirect_uri, registered_domain="example.com")
    engine = AsyncEngine("podio", client=client, transport=transport, clock=lambda: NOW)
    flow = await engine.start(scope="user:read")
    assert flow.authorization_url is not None
    query = dict(parse_qsl(urlsplit(flow.authorization_url).query))
    assert query["redirect_uri"] == redirect_uri
    done = await engine.callback(f"https://app.example.com/cb?code=abc&state={query['state']}")
    assert done.state == "exchanged"
    (request,) = transport.sent
    assert json.loads(request.body)["redirect_uri"] == query["redirect_uri"]
    assert json.loads(request.body)["redirect_uri"].encode() == redirect_uri.encode()


# --- SEC 13: redaction and secret-free reprs ---------------------------------------------------------


def test_sec13_redact_replaces_every_secret_field_by_a_fingerprint() -> None:
    params = {
        "access_token": ACCESS_TOKEN,
        "Refresh_Token": REFRESH_TOKEN,
        "CODE": CODE,
        "code_verifier": VERIFIER,
        "client_secret": CLIENT_SECRET,
        "state": STATE,
        "Authorization": f"Basic {CLIENT_SECRET}",
        "client_id": "cid",
        "scope": "global:all",
        "expires_in": 3600,
    }
    out = redact(params)
    assert set(out) == set(params)
    assert_no_secret(repr(out))
    assert out["access_token"] == fingerprint(ACCESS_TOKEN)
    assert out["CODE"] == fingerprint(CODE)
    assert (out["client_id"], out["scope"], out["expires_in"]) == ("cid", "global:all", 3600)
    assert params["access_token"] == ACCESS_TOKEN  # a copy, the input is untouched


def test_sec13_redact_leaves_empty_values_alone() -> None:
    assert redact({"code": "", "state": None, "password": ""}) == {"code": "", "state": None, "password": ""}


def test_sec13_secret_fields_cover_the_credentials() -> None:
    assert {
        "access_token",
        "refresh_token",
        "code",
        "code_verifier",
        "client_secret",
        "password",
        "state",
        "authorization",
    } <= SECRET_FIELDS


def test_sec13_fingerprint_is_short_stable_and_not_the_secret() -> None:
    value = fingerprint(ACCESS_TOKEN)
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", value)
    assert value == fingerprint(ACCESS_TOKEN)
    assert value != fingerprint(ACCESS_TOKEN + "x")
    assert ACCESS_TOKEN not in value


def _flow() -> Flow:
    return Flow(
        id="flow-1",
        spec="podio",
        state="authorized",
        created_at=NOW,
        expires_at=NOW + 600,
        client_id="cid",
        redirect_uri="https://app.example.com/callback",
        state_hash=digest(STATE),
        session_hash=digest("session-SECRET"),
        code_verifier=VERIFIER,
        code=CODE,
        callback_digest=digest("code\0" + CODE),
        authorization_url=f"https://podio.com/oauth/authorize?state={STATE}",
    )


def test_sec13_flow_repr_hides_secrets_and_digests() -> None:
    flow = _flow()
    text = repr(flow)
    assert_no_secret(text, str(flow))
    assert digest(STATE) not in text
    assert digest("session-SECRET") not in text
    assert "flow-1" in text and "authorized" in text


def test_sec13_redacted_flow_drops_code_verifier_and_url() -> None:
    flow = _flow().redacted()
    assert (flow.code, flow.code_verifier, flow.authorization_url) == (None, None, None)
    assert flow.id == "flow-1"


def test_sec13_token_repr_hides_secrets() -> None:
    token = Token(
        provider="podio",
        account=AccountRef("user", 1),
        access_token=ACCESS_TOKEN,
        token_type="bearer",
        obtained_at=NOW,
        refresh_token=REFRESH_TOKEN,
        extra={"id_token": ACCESS_TOKEN},
    )
    assert_no_secret(repr(token), str(token), token.fingerprint, token.key)
    assert "podio" in repr(token)


def test_sec13_client_repr_hides_the_secret() -> None:
    client = Client("cid", CLIENT_SECRET, "https://app.example.com/callback")
    assert_no_secret(repr(client), str(client))
    assert "cid" in repr(client)


def test_sec13_callback_params_repr_hides_state_and_code() -> None:
    params = CallbackParams(state=STATE, code=CODE, error="access_denied", error_description="no")
    assert_no_secret(repr(params), str(params))
    assert "access_denied" in repr(params)


def test_sec13_http_request_repr_hides_headers_and_body() -> None:
    request = HttpRequest(
        "POST",
        "https://api.podio.com/oauth/token",
        {"authorization": f"Basic {CLIENT_SECRET}"},
        f"code={CODE}".encode(),
    )
    assert_no_secret(repr(request), str(request))


def test_sec13_records_hide_secrets_through_attrs_too() -> None:
    """``attrs`` field metadata is what keeps the reprs clean: pin it for every secret field."""
    hidden = {
        Flow: {"state_hash", "session_hash", "code_verifier", "code", "callback_digest", "authorization_url"},
        Token: {"access_token", "refresh_token", "extra"},
        Client: {"client_secret"},
        CallbackParams: {"state", "code"},
        HttpRequest: {"headers", "body"},
    }
    for cls, names in hidden.items():
        for field in attrs.fields(cls):  # type: ignore[arg-type]
            if field.name in names:
                assert field.repr is False, f"{cls.__name__}.{field.name} shows in repr"


# --- SEC 6 and the limits of parse_callback ------------------------------------------------------------


PODIO_RULES = CallbackRules(error_reason="error_reason", repeated="last")
STRICT_RULES = CallbackRules()


def test_sec6_podio_takes_the_last_of_repeated_parameters() -> None:
    params = parse_callback(
        "https://app.example.com/cb?code=first&state=s1&code=second&state=s2", PODIO_RULES
    )
    assert (params.code, params.state) == ("second", "s2")
    assert load_spec("podio").callback.repeated == "last"


@pytest.mark.parametrize("name", ["state", "code", "error", "error_description"])
def test_sec6_reject_refuses_repeated_parameters(name: str) -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback(f"?state=s&code=c&{name}=a&{name}=b", STRICT_RULES)
    assert info.value.code == "repeated_parameter"
    assert repr(name) in info.value.message


def test_sec6_reject_is_the_default() -> None:
    assert CallbackRules().repeated == "reject"


def test_sec6_reject_ignores_repeats_of_parameters_it_does_not_read() -> None:
    params = parse_callback("?state=s&code=c&utm=1&utm=2", STRICT_RULES)
    assert (params.state, params.code) == ("s", "c")


def test_sec6_repeats_in_a_mapping_count_too() -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback({"state": ["s1", "s2"], "code": "c"}, STRICT_RULES)
    assert info.value.code == "repeated_parameter"
    assert parse_callback({"state": ["s1", "s2"], "code": "c"}, PODIO_RULES).state == "s2"


def test_sec6_repeated_state_is_refused_even_when_both_values_match() -> None:
    with pytest.raises(CallbackError):
        parse_callback("?state=s&state=s&code=c", STRICT_RULES)


@pytest.mark.parametrize(
    "data",
    [
        "https://app.example.com/cb?code=c%2Bd&state=a+b",
        "?code=c%2Bd&state=a+b",
        "code=c%2Bd&state=a+b",
        {"code": "c+d", "state": "a b"},
    ],
)
def test_callback_forms_read_alike(data: Any) -> None:
    params = parse_callback(data, STRICT_RULES)
    assert (params.code, params.state) == ("c+d", "a b")


def test_callback_reads_the_error_fields() -> None:
    params = parse_callback(
        "?state=s&error=access_denied&error_reason=user_denied&error_description=The+user+denied+your+request.",
        PODIO_RULES,
    )
    assert (params.error, params.error_reason, params.error_description) == (
        "access_denied",
        "user_denied",
        "The user denied your request.",
    )
    error = callback_error(params, PODIO_RULES)
    assert error is not None
    assert error.code == "access_denied"


def test_sec7_callback_with_neither_code_nor_error_is_missing_code() -> None:
    error = callback_error(parse_callback("?state=s", STRICT_RULES), STRICT_RULES)
    assert error is not None
    assert error.code == "missing_code"
    assert callback_error(parse_callback("?state=s&code=", STRICT_RULES), STRICT_RULES) is not None


def test_callback_ignores_the_fragment() -> None:
    params = parse_callback("https://app.example.com/cb#code=c&state=s", STRICT_RULES)
    assert (params.code, params.state) == (None, None)


def test_callback_issuer_is_read_when_the_spec_names_it() -> None:
    rules = CallbackRules(iss="iss")
    assert parse_callback("?state=s&code=c&iss=https%3A%2F%2Fpodio.com", rules).iss == "https://podio.com"
    assert parse_callback("?state=s&code=c&iss=https%3A%2F%2Fpodio.com", STRICT_RULES).iss is None


def test_callback_with_up_to_the_parameter_limit_is_read() -> None:
    query = "&".join(["state=s", "code=c", *(f"p{i}=1" for i in range(MAX_PARAMETERS - 2))])
    assert parse_callback("?" + query, STRICT_RULES).code == "c"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("?" + "&".join(f"p{i}=1" for i in range(MAX_PARAMETERS + 1)), id="query"),
        pytest.param("?" + "&".join(["state=s"] * 100), id="many-repeats"),
        pytest.param({f"p{i}": "1" for i in range(MAX_PARAMETERS + 1)}, id="mapping"),
        pytest.param({"p": ["1"] * (MAX_PARAMETERS + 1)}, id="mapping-list"),
    ],
)
def test_callback_with_too_many_parameters_is_refused(data: Any) -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback(data, PODIO_RULES)
    assert info.value.code == "callback_invalid"
    assert "too many parameters" in info.value.message


def test_callback_that_is_too_long_is_refused() -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback("?state=s&code=" + "c" * MAX_CALLBACK_LENGTH, STRICT_RULES)
    assert info.value.code == "callback_invalid"
    assert "too long" in info.value.message


def test_callback_mapping_that_is_too_long_is_refused() -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback({"state": "s", "code": "c" * (MAX_CALLBACK_LENGTH + 1)}, STRICT_RULES)
    assert info.value.code == "callback_invalid"


def test_callback_mapping_value_that_is_not_text_is_refused() -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback({"state": [b"s"], "code": "c"}, STRICT_RULES)
    assert info.value.code == "callback_invalid"


@pytest.mark.parametrize("value", [5, None])
def test_callback_mapping_value_of_any_type_is_a_callback_error(value: Any) -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback({"state": value, "code": "c"}, STRICT_RULES)
    assert info.value.code == "callback_invalid"


@pytest.mark.parametrize("query", ["?state=%ff%fe&code=c", "?state=s&code=%C3%28", "?state=s&code=ab%80cd"])
def test_callback_with_non_utf8_escapes_is_refused(query: str) -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback(query, STRICT_RULES)
    assert info.value.code == "callback_invalid"


def test_callback_errors_hide_the_values() -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback(f"?state={STATE}&code={CODE}&code={CODE}x", STRICT_RULES)
    assert_no_secret(str(info.value), repr(info.value))


def test_empty_values_read_as_absent() -> None:
    params = parse_callback("?state=&code=&error=", STRICT_RULES)
    assert (params.state, params.code, params.error) == (None, None, None)
