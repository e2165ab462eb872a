"""Token requests and token responses, sans-I/O (SECURITY.md 8, 9, 13, 19 parsing, 22).

``read_token_response`` must turn *anything* the token endpoint answers into
either a ``Token`` or a ``ProviderError`` with a stable code: never a
``JSONDecodeError``, ``KeyError``, ``TypeError`` or ``ValueError``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import attrs
import pytest
from flowengine import (
    AccountRef,
    Flow,
    FlowSpec,
    HttpRequest,
    HttpResponse,
    ProviderError,
    SpecError,
    Token,
    load_spec,
)
from flowengine._spec_load import spec_from_mapping
from flowengine._tokens import build_token_request, read_token_response

NOW = 1_700_000_000.0
CLIENT_ID = "podio-client"
ACCESS_TOKEN = "at-SECRET-" + "a" * 118  # Podio's are 128 characters
REFRESH_TOKEN = "rt-SECRET-0123456789abcdef"
CLIENT_SECRET = "cs-SECRET-s3cr3t"
CODE = "code-SECRET-42"
TOKEN_URL = "https://api.podio.com/oauth/token/v2"
SECRETS = (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, CODE)

PODIO_TOKEN = {
    "access_token": ACCESS_TOKEN,
    "token_type": "bearer",
    "expires_in": 28800,
    "refresh_token": REFRESH_TOKEN,
    "scope": "global:all",
    "ref": {"type": "user", "id": 123},
}

PODIO_ERROR = {
    "error": "invalid_grant",
    "error_description": "Sorry, your OAuth code is invalid.",
    "error_detail": None,
    "error_parameters": {},
    "error_propagate": False,
    "request": {"url": "http://api.podio.com/oauth/token/v2", "query_string": "", "method": "POST"},
}

JSON = {"content-type": "application/json; charset=utf-8"}


@pytest.fixture(scope="module")
def podio() -> FlowSpec:
    return load_spec("podio")


def response(
    body: Any = None, status: int = 200, headers: dict[str, str] | None = None, raw: bytes | None = None
):
    """An HttpResponse with ``body`` as JSON (or ``raw`` bytes as they are)."""
    data = raw if raw is not None else json.dumps(body).encode()
    return HttpResponse(status, dict(JSON if headers is None else headers), data)


def token_body(**changes: Any) -> dict[str, Any]:
    """Podio's success body with some fields changed; a value of ``...`` removes the field."""
    body = {**PODIO_TOKEN, **changes}
    return {k: v for k, v in body.items() if v is not ...}


def read(spec: FlowSpec, resp: HttpResponse) -> Token:
    return read_token_response(spec, resp, client_id=CLIENT_ID, now=NOW)


def outcome(spec: FlowSpec, resp: HttpResponse) -> Token | ProviderError:
    """The token read from ``resp``, or the ProviderError it was refused with (anything else escapes)."""
    try:
        return read(spec, resp)
    except ProviderError as error:
        return error


def refused(spec: FlowSpec, resp: HttpResponse, code: str = "invalid_token_response") -> ProviderError:
    """Assert the response is refused with ``code``; return the error."""
    with pytest.raises(ProviderError) as info:
        read(spec, resp)
    error = info.value
    assert error.code == code, str(error)
    assert error.status == resp.status
    # A typed refusal, not a decoding failure in disguise.
    assert not isinstance(error.__context__, ValueError | KeyError | TypeError)
    assert not isinstance(error.__cause__, ValueError | KeyError | TypeError)
    return error


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {text!r}"


# --- SEC 8: a good response, and everything that is not one -----------------------------------


def test_sec8_podio_token_is_read(podio: FlowSpec) -> None:
    token = read(podio, response(PODIO_TOKEN))
    assert token.provider == "podio"
    assert token.access_token == ACCESS_TOKEN
    assert token.refresh_token == REFRESH_TOKEN
    assert token.token_type == "bearer"
    assert token.scope == "global:all"
    assert token.client_id == CLIENT_ID
    assert token.obtained_at == NOW
    assert token.expires_at == NOW + 28800 - 60
    assert token.header_scheme == "OAuth2"
    assert token.authorization_header() == f"OAuth2 {ACCESS_TOKEN}"
    assert token.dead is False


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(token_body(access_token=...), id="absent"),
        pytest.param(token_body(access_token=""), id="empty"),
        pytest.param(token_body(access_token=None), id="null"),
        pytest.param(token_body(access_token=12345), id="number"),
        pytest.param(token_body(access_token=["x"]), id="list"),
        pytest.param(token_body(access_token={"value": "x"}), id="object"),
    ],
)
def test_sec8_missing_access_token_is_refused(podio: FlowSpec, body: dict[str, Any]) -> None:
    error = refused(podio, response(body))
    assert "access_token" in error.message
    assert error.retryable is False


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(token_body(token_type=...), id="absent"),
        pytest.param(token_body(token_type=None), id="null"),
        pytest.param(token_body(token_type=1), id="number"),
        pytest.param(token_body(token_type="mac"), id="mac"),
        pytest.param(token_body(token_type="DPoP"), id="dpop"),
        pytest.param(token_body(token_type=""), id="empty"),
        pytest.param(token_body(token_type="bearer "), id="trailing-space"),
    ],
)
def test_sec8_missing_or_non_bearer_token_type_is_refused(podio: FlowSpec, body: dict[str, Any]) -> None:
    refused(podio, response(body))


@pytest.mark.parametrize("token_type", ["bearer", "Bearer", "BEARER", "bEaReR"])
def test_sec8_bearer_is_case_insensitive(podio: FlowSpec, token_type: str) -> None:
    token = read(podio, response(token_body(token_type=token_type)))
    assert token.token_type.lower() == "bearer"


@pytest.mark.parametrize("status", [200, 201])
@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        pytest.param(b"<html><body><h1>Welcome to Podio</h1></body></html>", "text/html", id="html"),
        pytest.param(b"access_token=abc&token_type=bearer", "application/x-www-form-urlencoded", id="form"),
        pytest.param(b"OK", "text/plain", id="text"),
        pytest.param(b"", "", id="empty"),
        pytest.param(b'{"access_token": "abc", ', "application/json", id="truncated-json"),
        pytest.param(b"\xff\xfe\x00{", "application/json", id="not-utf8"),
        pytest.param(b"[1, 2, 3]", "application/json", id="json-list"),
        pytest.param(b'"access_token"', "application/json", id="json-string"),
        pytest.param(b"3600", "application/json", id="json-number"),
        pytest.param(b"null", "application/json", id="json-null"),
        pytest.param(b"true", "application/json", id="json-bool"),
    ],
)
def test_sec8_success_status_without_a_json_object_is_refused(
    podio: FlowSpec, raw: bytes, content_type: str, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    error = refused(podio, response(raw=raw, status=status, headers=headers))
    assert error.retryable is False
    assert error.body == {}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 420, 429, 500, 502, 503])
@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (b"Service Unavailable", "text/plain"),
        (b"", ""),
        (b"{not json", "application/json"),
        (b'["error"]', "application/json"),
    ],
)
def test_sec8_error_status_with_any_body_is_a_typed_error(
    podio: FlowSpec, raw: bytes, content_type: str, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with pytest.raises(ProviderError) as info:
        read(podio, response(raw=raw, status=status, headers=headers))
    error = info.value
    assert error.status == status
    assert error.body == {}
    assert error.provider_error is None
    assert error.description is None
    assert error.code in {"provider_error", "unauthorized", "rate_limited", "provider_unavailable"}
    assert not isinstance(error.__context__, ValueError)


def test_sec8_html_error_page_names_its_content_type(podio: FlowSpec) -> None:
    resp = response(
        raw=b"<html>oops</html>", status=400, headers={"content-type": "text/html; charset=utf-8"}
    )
    error = refused(podio, resp, code="provider_error")
    assert "text/html" in error.message


# --- SEC 8: expires_in --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        pytest.param(3600, 3600, id="int"),
        pytest.param("3600", 3600, id="string"),
        pytest.param(" 3600 ", 3600, id="padded-string"),
        pytest.param(3600.5, 3600, id="float"),
        pytest.param(3600.0, 3600, id="integral-float"),
        pytest.param(28800, 28800, id="podio"),
    ],
)
def test_sec8_expires_in_numbers_are_parsed(podio: FlowSpec, raw: Any, seconds: int) -> None:
    token = read(podio, response(token_body(expires_in=raw)))
    assert token.expires_at == NOW + seconds - 60


@pytest.mark.parametrize(
    "body", [token_body(expires_in=None), token_body(expires_in=...)], ids=["null", "absent"]
)
def test_sec8_expires_in_unknown_means_no_expiry(podio: FlowSpec, body: dict[str, Any]) -> None:
    token = read(podio, response(body))
    assert token.expires_at is None
    assert token.expires_within(10**9, NOW) is False


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(-1, id="negative"),
        pytest.param(-0.5, id="negative-float"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param("abc", id="text"),
        pytest.param("", id="empty-string"),
        pytest.param("-5", id="negative-string"),
        pytest.param("NaN", id="nan-string"),
        pytest.param("Infinity", id="infinity-string"),
        pytest.param([3600], id="list"),
        pytest.param({"seconds": 3600}, id="object"),
    ],
)
def test_sec8_expires_in_nonsense_is_refused(podio: FlowSpec, raw: Any) -> None:
    error = refused(podio, response(token_body(expires_in=raw)))
    assert "expires_in" in error.message


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
def test_sec8_expires_in_non_finite_json_is_refused(podio: FlowSpec, literal: bytes) -> None:
    """Python's json accepts NaN/Infinity and overflows 1e400 to inf: both must be refused."""
    raw = json.dumps(token_body(expires_in=0)).replace('"expires_in": 0', '"expires_in": %s')
    refused(podio, response(raw=(raw.encode() % literal)))


@pytest.mark.parametrize("raw", ["3600.5", "+3600", "1e3", "٣٦٠٠", 0])
def test_sec8_expires_in_odd_values_are_parsed_sensibly_or_refused(podio: FlowSpec, raw: Any) -> None:
    result = outcome(podio, response(token_body(expires_in=raw)))
    if isinstance(result, ProviderError):
        assert result.code == "invalid_token_response"
    else:
        assert result.expires_at is not None
        assert result.expires_at <= NOW + 3600


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'"\xc2\xb2"', id="superscript-two"),
        pytest.param(b"1" + b"0" * 400, id="huge-int"),
        pytest.param(b'"1' + b"0" * 400 + b'"', id="huge-int-string"),
        pytest.param(b'"1' + b"0" * 5000 + b'"', id="over-int-digit-limit"),
    ],
)
def test_sec8_expires_in_never_raises_a_bare_exception(podio: FlowSpec, raw: bytes) -> None:
    body = json.dumps(token_body(expires_in=0)).encode().replace(b'"expires_in": 0', b'"expires_in": ' + raw)
    result = outcome(podio, response(raw=body))
    if isinstance(result, ProviderError):
        assert result.code == "invalid_token_response"
    else:
        assert result.expires_at is not None


# --- SEC 8: the other fields ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", 5, ["r"], {"token": "r"}, True])
def test_sec8_refresh_token_that_is_not_a_string_is_refused(podio: FlowSpec, raw: Any) -> None:
    error = refused(podio, response(token_body(refresh_token=raw)))
    assert "refresh_token" in error.message


def test_sec8_refresh_token_may_be_absent(podio: FlowSpec) -> None:
    assert read(podio, response(token_body(refresh_token=...))).refresh_token is None
    assert read(podio, response(token_body(refresh_token=None))).refresh_token is None


def test_sec8_scope_list_is_joined_with_the_spec_separator(podio: FlowSpec) -> None:
    token = read(podio, response(token_body(scope=["user:read", "space:all"])))
    assert token.scope == "user:read space:all"


@pytest.mark.parametrize("raw", [5, True, {"user": "read"}, ["user:read", 5]])
def test_sec8_scope_of_another_type_is_refused(podio: FlowSpec, raw: Any) -> None:
    refused(podio, response(token_body(scope=raw)))


def test_sec8_scope_absent_means_the_spec_default(podio: FlowSpec) -> None:
    """Podio: no scope means global:all."""
    assert read(podio, response(token_body(scope=...))).scope == "global:all"


def test_sec8_scope_absent_without_a_default_is_unknown(podio: FlowSpec) -> None:
    spec = attrs.evolve(podio, token=attrs.evolve(podio.token, default_scope=None))
    assert read(spec, response(token_body(scope=...))).scope is None


# --- SEC 9: unknown fields kept, the account, narrower scopes ---------------------------------------


def test_sec9_podio_ref_is_kept_in_extra_and_as_the_account(podio: FlowSpec) -> None:
    token = read(podio, response(token_body(ref={"type": "user", "id": 123})))
    assert token.extra == {"ref": {"type": "user", "id": 123}}
    assert token.account == AccountRef("user", 123)
    assert isinstance(token.account.id, int)
    assert token.account.id == 123
    assert str(token.account) == "user:123"
    assert token.key == "podio:user:123"


def test_sec9_app_ref_is_an_app_account(podio: FlowSpec) -> None:
    token = read(podio, response(token_body(ref={"type": "app", "id": 987654})))
    assert token.account == AccountRef("app", 987654)
    assert token.key == "podio:app:987654"


def test_sec9_string_account_id_stays_a_string(podio: FlowSpec) -> None:
    token = read(podio, response(token_body(ref={"type": "user", "id": "123"})))
    assert token.account.id == "123"


def test_sec9_unknown_fields_are_kept_not_fatal(podio: FlowSpec) -> None:
    extras = {"ref": {"type": "user", "id": 1}, "id_token": None, "x-podio": {"shard": [1, 2]}, "n": 1.5}
    token = read(podio, response(token_body(**extras)))
    assert token.extra == extras
    # The fields read into the token are not repeated in extra.
    assert not {"access_token", "token_type", "expires_in", "refresh_token", "scope"} & set(token.extra)


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param(..., id="absent"),
        pytest.param(None, id="null"),
        pytest.param([1], id="list"),
        pytest.param({"type": "user"}, id="no-id"),
        pytest.param({"type": "user", "id": True}, id="bool-id"),
        pytest.param({"type": "user", "id": 1.5}, id="float-id"),
        pytest.param({"type": "user", "id": ""}, id="empty-id"),
        pytest.param({"type": 5, "id": 1}, id="number-type"),
        pytest.param({"id": 1}, id="no-type"),
    ],
)
def test_sec9_account_that_cannot_be_read_is_refused(podio: FlowSpec, ref: Any) -> None:
    error = refused(podio, response(token_body(ref=ref)))
    assert "ref." in error.message


def test_sec9_spec_without_account_rule_names_the_client(podio: FlowSpec) -> None:
    spec = attrs.evolve(podio, token=attrs.evolve(podio.token, account=None))
    token = read(spec, response(token_body(ref=...)))
    assert token.account == AccountRef("client", CLIENT_ID)


def _flow(scope: str | None, granted: str | None) -> Flow:
    return Flow(
        id="f1",
        spec="podio",
        state="exchanged",
        created_at=NOW,
        expires_at=NOW + 600,
        client_id=CLIENT_ID,
        redirect_uri="https://app.example.com/callback",
        state_hash="0" * 64,
        scope=scope,
        granted_scope=granted,
    )


def test_sec9_narrower_granted_scope_is_reported(podio: FlowSpec) -> None:
    token = read(podio, response(token_body(scope="user:read")))
    flow = _flow("user:read space:all app:write", token.scope)
    assert flow.missing_scopes == frozenset({"space:all", "app:write"})


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        ("user:read space:all", "space:all user:read"),
        ("user:read", "user:read space:all"),
        (None, "global:all"),
        ("user:read", None),
        ("", "user:read"),
    ],
)
def test_sec9_nothing_missing(requested: str | None, granted: str | None) -> None:
    assert _flow(requested, granted).missing_scopes == frozenset()


# --- SEC 19 (parsing): error statuses ------------------------------------------------------------


def test_sec19_invalid_grant_is_not_retryable(podio: FlowSpec) -> None:
    error = refused(podio, response(PODIO_ERROR, status=400), code="invalid_grant")
    assert error.retryable is False
    assert error.provider_error == "invalid_grant"
    assert error.description == "Sorry, your OAuth code is invalid."
    assert error.body == PODIO_ERROR
    assert "Sorry, your OAuth code is invalid." in error.message
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, {"error": "invalid_client", "error_description": "bad secret"}, "invalid_client"),
        (401, {"error": "invalid_client"}, "invalid_client"),
        (401, {"error": "unauthorized", "error_description": "expired_token"}, "unauthorized"),
        (401, {"error": "invalid_token"}, "unauthorized"),
        (401, None, "unauthorized"),
        (
            400,
            {"error": "invalid_request", "error_description": "redirect_uri off the domain"},
            "provider_error",
        ),
        (400, {"error": "unsupported_grant_type"}, "provider_error"),
        (403, {"error": "forbidden"}, "provider_error"),
        (404, {"error": "not_found"}, "provider_error"),
    ],
)
def test_sec19_client_errors_are_not_retryable(podio: FlowSpec, status: int, body: Any, code: str) -> None:
    resp = response(body, status=status) if body is not None else response(raw=b"", status=status, headers={})
    error = refused(podio, resp, code=code)
    assert error.retryable is False
    if body is not None:
        assert error.body == body
        assert error.provider_error == body["error"]
        assert error.description == body.get("error_description")


@pytest.mark.parametrize("status", [420, 429])
def test_sec19_rate_limited_is_retryable_with_retry_after(podio: FlowSpec, status: int) -> None:
    body = {"error": "rate_limit", "error_description": "You have hit the rate limit."}
    error = refused(
        podio, response(body, status=status, headers={**JSON, "Retry-After": "30"}), code="rate_limited"
    )
    assert error.retryable is True
    assert error.retry_after == 30.0
    assert error.description == "You have hit the rate limit."


@pytest.mark.parametrize("status", [420, 429])
def test_sec19_rate_limited_without_retry_after(podio: FlowSpec, status: int) -> None:
    error = refused(podio, response({"error": "rate_limit"}, status=status), code="rate_limited")
    assert error.retryable is True
    assert error.retry_after is None


@pytest.mark.parametrize("value", ["soon", "-1", "", "1.5e3"])
def test_sec19_unreadable_retry_after_is_ignored(podio: FlowSpec, value: str) -> None:
    error = refused(podio, response({}, status=429, headers={"Retry-After": value}), code="rate_limited")
    assert error.retry_after is None


def test_sec19_retry_after_http_date_is_parsed(podio: FlowSpec) -> None:
    # NOW is 2023-11-14 22:13:20 GMT; the date below is 120 s later.
    headers = {"Retry-After": "Tue, 14 Nov 2023 22:15:20 GMT"}
    error = refused(podio, response({}, status=503, headers=headers), code="provider_unavailable")
    assert error.retry_after == pytest.approx(120.0)


def test_sec19_420_is_rate_limited_only_where_the_spec_says_so(podio: FlowSpec) -> None:
    generic = attrs.evolve(podio, token=attrs.evolve(podio.token, rate_limit_status=(429,)))
    assert refused(generic, response({"error": "x"}, status=420), code="provider_error").retryable is False
    assert refused(generic, response({"error": "x"}, status=429), code="rate_limited").retryable is True


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_sec19_server_errors_are_retryable(podio: FlowSpec, status: int) -> None:
    body = {"error": "server_error", "error_description": "Podio is down for maintenance"}
    error = refused(podio, response(body, status=status), code="provider_unavailable")
    assert error.retryable is True
    assert error.description == "Podio is down for maintenance"
    assert error.body == body


def test_sec19_server_error_honours_retry_after(podio: FlowSpec) -> None:
    error = refused(
        podio, response({}, status=503, headers={"retry-after": "120"}), code="provider_unavailable"
    )
    assert error.retry_after == 120.0


def test_sec19_invalid_grant_on_a_5xx_is_still_unavailable(podio: FlowSpec) -> None:
    """The status decides retryability before the body's error code."""
    refused(podio, response({"error": "invalid_grant"}, status=500), code="provider_unavailable")


def test_sec19_redirect_status_is_a_provider_error(podio: FlowSpec) -> None:
    resp = response(raw=b"", status=302, headers={"location": "https://podio.com/login"})
    assert refused(podio, resp, code="provider_error").retryable is False


def test_sec19_long_description_is_kept_whole_but_the_message_is_bounded(podio: FlowSpec) -> None:
    description = "x" * 5000
    error = refused(
        podio,
        response({"error": "invalid_request", "error_description": description}, status=400),
        code="provider_error",
    )
    assert error.description == description
    assert len(error.message) <= 300


def test_sec19_error_fields_of_the_wrong_type_are_ignored(podio: FlowSpec) -> None:
    error = refused(
        podio, response({"error": 5, "error_description": ["x"]}, status=400), code="provider_error"
    )
    assert error.provider_error is None
    assert error.description is None
    assert error.body == {"error": 5, "error_description": ["x"]}


def test_sec19_error_body_on_a_200_is_believed_as_the_providers_error(podio: FlowSpec) -> None:
    error = refused(podio, response({"error": "invalid_grant"}, status=200), code="invalid_grant")
    assert error.retryable is False


# --- SEC 22: expiry uses receipt time minus a leeway ---------------------------------------------


def test_sec22_expires_at_is_receipt_time_plus_expires_in_minus_default_leeway(podio: FlowSpec) -> None:
    token = read_token_response(
        podio, response(token_body(expires_in=3600)), client_id=CLIENT_ID, now=NOW + 7
    )
    assert token.obtained_at == NOW + 7
    assert token.expires_at == NOW + 7 + 3600 - 60


def test_sec22_default_leeway_is_60_seconds(podio: FlowSpec) -> None:
    data = {
        "name": "generic",
        "endpoints": {"authorize": "https://id.example/authorize", "token": "https://id.example/token"},
        "authorization": {"params": {"client_id": "{client_id}", "state": "{state}"}},
        "grants": {"authorization_code": {"params": {"code": "{code}"}}},
    }
    spec = spec_from_mapping(data)
    assert spec.token.leeway == 60
    token = read(spec, response({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600}))
    assert token.expires_at == NOW + 3600 - 60
    assert token.header_scheme == "Bearer"
    assert token.account == AccountRef("client", CLIENT_ID)


@pytest.mark.parametrize("leeway", [0, 30, 300])
def test_sec22_spec_leeway_is_used(podio: FlowSpec, leeway: int) -> None:
    spec = attrs.evolve(podio, token=attrs.evolve(podio.token, leeway=leeway))
    token = read(spec, response(token_body(expires_in=3600)))
    assert token.expires_at == NOW + 3600 - leeway


def test_sec22_expires_within(podio: FlowSpec) -> None:
    token = read(podio, response(token_body(expires_in=3600)))
    assert token.expires_within(0, NOW) is False
    assert token.expires_within(3540, NOW) is True
    assert token.expires_within(0, NOW + 3540) is True
    assert token.expires_within(0, NOW + 3539) is False


# --- build_token_request ------------------------------------------------------------------------


def code_values(**changes: Any) -> dict[str, str | None]:
    values: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": "https://app.example.com/callback?next=/a&b=c d",
        "code": CODE,
        "scope": None,
    }
    values.update(changes)
    return values


def with_grant(spec: FlowSpec, grant: str, **changes: Any) -> FlowSpec:
    return attrs.evolve(spec, grants={**spec.grants, grant: attrs.evolve(spec.grants[grant], **changes)})


def test_podio_code_request_is_json_with_credentials_in_the_body(podio: FlowSpec) -> None:
    request = build_token_request(podio, "authorization_code", TOKEN_URL, code_values())
    assert isinstance(request, HttpRequest)
    assert (request.method, request.url) == ("POST", TOKEN_URL)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == "flowengine"
    assert "authorization" not in request.headers
    assert json.loads(request.body) == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "redirect_uri": "https://app.example.com/callback?next=/a&b=c d",
        "client_secret": CLIENT_SECRET,
        "code": CODE,
    }


def test_form_encoding(podio: FlowSpec) -> None:
    spec = with_grant(podio, "authorization_code", encoding="form")
    secret = "p&ss=w+rd/é"
    request = build_token_request(spec, "authorization_code", TOKEN_URL, code_values(client_secret=secret))
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(request.body.decode("ascii"), strict_parsing=True)) == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "redirect_uri": "https://app.example.com/callback?next=/a&b=c d",
        "client_secret": secret,
        "code": CODE,
    }


def test_params_whose_variable_is_none_are_omitted(podio: FlowSpec) -> None:
    request = build_token_request(podio, "authorization_code", TOKEN_URL, code_values(client_secret=None))
    assert "client_secret" not in json.loads(request.body)
    refresh = build_token_request(
        podio,
        "refresh_token",
        TOKEN_URL,
        {"client_id": CLIENT_ID, "client_secret": None, "refresh_token": None},
    )
    assert json.loads(refresh.body) == {"grant_type": "refresh_token", "client_id": CLIENT_ID}


def test_refresh_request(podio: FlowSpec) -> None:
    values = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}
    request = build_token_request(podio, "refresh_token", TOKEN_URL, values, user_agent="my-app/1.0")
    assert request.headers["user-agent"] == "my-app/1.0"
    assert json.loads(request.body) == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }


def _basic_credentials(request: HttpRequest) -> tuple[str, str]:
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    user, sep, password = base64.b64decode(encoded, validate=True).decode("ascii").partition(":")
    assert sep == ":"
    return user, password


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        (CLIENT_ID, CLIENT_SECRET),
        ("id:with:colons", "secret:with:colons"),
        ("id with space", "s&cret=+/%~é"),
        ("ünïcødé", "pässwörd"),
    ],
)
def test_basic_client_auth_urlencodes_id_and_secret(podio: FlowSpec, client_id: str, secret: str) -> None:
    """RFC 6749 §2.3.1: each part form-urlencoded, then ``id:secret`` in Base64."""
    spec = with_grant(podio, "authorization_code", client_auth="basic", encoding="form")
    request = build_token_request(
        spec, "authorization_code", TOKEN_URL, code_values(client_id=client_id, client_secret=secret)
    )
    user, password = _basic_credentials(request)
    assert ":" not in user  # so the server splits at the right colon
    assert (unquote_plus(user), unquote_plus(password)) == (client_id, secret)
    assert all(ord(c) < 128 for c in user + password)


def test_basic_client_auth_uses_the_appendix_b_encoding(podio: FlowSpec) -> None:
    spec = with_grant(podio, "authorization_code", client_auth="basic")
    request = build_token_request(
        spec, "authorization_code", TOKEN_URL, code_values(client_id="my app", client_secret="a*b c")
    )
    assert _basic_credentials(request) == ("my+app", "a*b+c")


def test_basic_client_auth_with_the_secret_also_in_the_body_is_a_spec_error(podio: FlowSpec) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(with_grant(podio, "authorization_code", client_auth="basic"))
    [problem] = info.value.problems
    assert problem.path == "$.grants.authorization_code.params"
    assert "RFC 6749" in problem.message


# --- SEC 13: no secret in str() or repr() ---------------------------------------------------------


def test_sec13_token_repr_hides_secrets(podio: FlowSpec) -> None:
    token = read(podio, response(PODIO_TOKEN))
    assert_no_secret(repr(token), str(token), repr(token.account), token.fingerprint, token.key)
    assert token.fingerprint.startswith("sha256:")
    assert token.fingerprint == read(podio, response(PODIO_TOKEN)).fingerprint


def test_sec13_request_repr_hides_credentials(podio: FlowSpec) -> None:
    for spec in (podio, with_grant(podio, "authorization_code", client_auth="basic", encoding="form")):
        request = build_token_request(spec, "authorization_code", TOKEN_URL, code_values())
        assert_no_secret(repr(request), str(request))
        assert "authorization" not in repr(request).lower()


def test_sec13_response_repr_hides_the_body(podio: FlowSpec) -> None:
    resp = response(PODIO_TOKEN)
    assert_no_secret(repr(resp), str(resp))


@pytest.mark.parametrize(
    "resp",
    [
        pytest.param(response(token_body(token_type="mac")), id="bad-token-type"),
        pytest.param(response(token_body(expires_in="soon")), id="bad-expires-in"),
        pytest.param(response(token_body(refresh_token=5)), id="bad-refresh-token"),
        pytest.param(response(token_body(scope=5)), id="bad-scope"),
        pytest.param(response(token_body(ref=None)), id="bad-account"),
        pytest.param(response(token_body(token_type=...)), id="no-token-type"),
        pytest.param(response(raw=json.dumps(PODIO_TOKEN).encode()[:-3]), id="truncated"),
        pytest.param(response({"error": "invalid_grant", "code": CODE}, status=400), id="error-echoing-code"),
        pytest.param(response({"error": "server_error", "access_token": ACCESS_TOKEN}, status=500), id="5xx"),
    ],
)
def test_sec13_errors_hide_secrets(podio: FlowSpec, resp: HttpResponse) -> None:
    with pytest.raises(ProviderError) as info:
        read(podio, resp)
    error = info.value
    assert_no_secret(str(error), repr(error), error.message, *map(str, error.args))
