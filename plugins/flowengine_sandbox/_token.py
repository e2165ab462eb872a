"""The token endpoints: `POST /oauth/token/v2` (JSON) and `POST /oauth/token` (form).

Both accept the same grants and answer the same way; every request they receive is
recorded, whatever its outcome, so that a test can prove what was (or was not) sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowengine_sandbox._web import (
    NO_STORE,
    PodioError,
    error_response,
    invalid_request,
    read_form,
    read_json_object,
    settings_of,
    state_of,
)
from flowengine_sandbox.settings import RegisteredClient, SandboxSettings
from flowengine_sandbox.state import (
    ClientAuth,
    Grant,
    GrantError,
    IssuedTokens,
    RecordedTokenRequest,
    SandboxState,
)

__all__ = ["s256", "token_form", "token_json"]

_CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1

_Reader = Callable[[Request], Awaitable[dict[str, str]]]
_Basic = tuple[str, str]
_IssueTokens = Callable[[Mapping[str, str], RegisteredClient, SandboxSettings, SandboxState], IssuedTokens]


def s256(code_verifier: str) -> str:
    """Return the S256 code challenge of a PKCE code verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def token_json(request: Request) -> Response:
    """POST /oauth/token/v2: a token request with a JSON body."""
    return await _token_endpoint(request, _read_json_fields)


async def token_form(request: Request) -> Response:
    """POST /oauth/token: a token request with a form-encoded body."""
    return await _token_endpoint(request, read_form)


async def _token_endpoint(request: Request, read: _Reader) -> Response:
    settings = settings_of(request)
    state = state_of(request)
    authorization = request.headers.get("authorization", "")
    fields: dict[str, str] = {}
    try:
        fields = await read(request)
        response: Response = _answer(fields, authorization, settings, state)
    except PodioError as error:
        response = error_response(request, error)
    state.record(
        RecordedTokenRequest(
            path=request.url.path,
            content_type=request.headers.get("content-type", ""),
            grant_type=fields.get("grant_type"),
            fields=fields,
            client_auth=_client_auth(authorization, fields),
            received_at=settings.clock(),
            status=response.status_code,
        )
    )
    return response


async def _read_json_fields(request: Request) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in (await read_json_object(request)).items():
        # Numbers are fine for numeric fields such as `app_id`; anything else is a mistake.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise invalid_request(f"Field {name} must be a string")
        fields[name] = value
    return fields


def _client_auth(authorization: str, fields: Mapping[str, str]) -> ClientAuth:
    if authorization[:6].lower() == "basic ":
        return "basic"
    return "body" if "client_secret" in fields else "none"


def _answer(
    fields: Mapping[str, str], authorization: str, settings: SandboxSettings, state: SandboxState
) -> JSONResponse:
    grant_type = fields.get("grant_type")
    if not grant_type:
        raise invalid_request("Missing required field: grant_type")
    if grant_type not in _GRANTS:
        raise PodioError(400, "unsupported_grant_type", f"Unknown grant_type {grant_type!r}")
    required, issue_tokens = _GRANTS[grant_type]
    basic = _basic_credentials(authorization)
    credentials = () if basic else ("client_id", "client_secret")
    missing = [name for name in (*credentials, *required) if not fields.get(name)]
    if missing:
        raise invalid_request(f"Missing required field: {', '.join(missing)}")
    client = _authenticated_client(fields, basic, settings)
    try:
        issued = issue_tokens(fields, client, settings, state)
    except GrantError as error:
        raise PodioError(400, "invalid_grant", error.description) from None
    body = {
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
        "refresh_token": issued.refresh_token,
        "scope": issued.grant.scope,
        "ref": {"type": issued.grant.ref_type, "id": issued.grant.ref_id},
    }
    return JSONResponse(body, headers=NO_STORE)


def _basic_credentials(authorization: str) -> _Basic | None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client(basic=True) from None
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        raise _invalid_client(basic=True)
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return unquote_plus(client_id), unquote_plus(client_secret)


def _authenticated_client(
    fields: Mapping[str, str], basic: _Basic | None, settings: SandboxSettings
) -> RegisteredClient:
    if basic is None:
        client_id, client_secret = fields["client_id"], fields["client_secret"]
    else:
        # RFC 6749 §2.3: one authentication method per request.
        if "client_secret" in fields:
            raise invalid_request("Send the client secret in HTTP Basic or the body, not both")
        client_id, client_secret = basic
        if fields.get("client_id", client_id) != client_id:
            raise invalid_request("client_id in the body differs from the one in HTTP Basic")
    client = settings.clients.get(client_id)
    if client is None or not hmac.compare_digest(client_secret.encode(), client.client_secret.encode()):
        raise _invalid_client(basic=basic is not None)
    return client


def _invalid_client(*, basic: bool) -> PodioError:
    # RFC 6749 §5.2: 401 with a challenge when the client tried HTTP Basic, else 400.
    if basic:
        return PodioError(
            401,
            "invalid_client",
            "Client authentication failed",
            headers={"WWW-Authenticate": 'Basic realm="podio"'},
        )
    return PodioError(400, "invalid_client", "Client authentication failed")


def _authorization_code(
    fields: Mapping[str, str],
    client: RegisteredClient,
    settings: SandboxSettings,
    state: SandboxState,
) -> IssuedTokens:
    code = state.take_code(fields["code"])
    now = settings.clock()
    if code.client_id != client.client_id:
        raise GrantError("The authorization code was issued to another client")
    if now >= code.expires_at:
        raise GrantError("The authorization code has expired")
    if fields["redirect_uri"] != code.redirect_uri:
        raise GrantError("redirect_uri differs from the one of the authorization request")
    verifier = fields.get("code_verifier") or None
    if code.code_challenge is None:
        if verifier is not None:
            # RFC 9700 §2.1.1: a verifier without a challenge is a downgrade attempt.
            raise GrantError("code_verifier sent for a code issued without code_challenge")
    elif verifier is None:
        raise GrantError("code_verifier is required for this code")
    elif not _CODE_VERIFIER.fullmatch(verifier) or not hmac.compare_digest(
        s256(verifier), code.code_challenge
    ):
        raise GrantError("code_verifier does not match the code_challenge")
    grant = Grant(client.client_id, code.scope, "user", code.user_id)
    return _issue(grant, settings, state, family=code.family)


def _refresh_token(
    fields: Mapping[str, str],
    client: RegisteredClient,
    settings: SandboxSettings,
    state: SandboxState,
) -> IssuedTokens:
    return state.refresh(
        fields["refresh_token"],
        client_id=client.client_id,
        now=settings.clock(),
        rotate=settings.rotate_refresh_tokens,
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
    )


def _password(
    fields: Mapping[str, str],
    client: RegisteredClient,
    settings: SandboxSettings,
    state: SandboxState,
) -> IssuedTokens:
    user = settings.user
    same_user = fields["username"].casefold() == user.email.casefold()
    same_password = hmac.compare_digest(fields["password"].encode(), user.password.encode())
    if not (same_user and same_password):
        raise GrantError("Invalid username or password")
    grant = Grant(client.client_id, settings.granted_scope or "global:all", "user", user.id)
    return _issue(grant, settings, state)


def _app(
    fields: Mapping[str, str],
    client: RegisteredClient,
    settings: SandboxSettings,
    state: SandboxState,
) -> IssuedTokens:
    app_id = fields["app_id"]
    if not (app_id.isascii() and app_id.isdigit()):
        raise invalid_request("app_id must be a number")
    app = settings.apps.get(int(app_id))
    if app is None or not hmac.compare_digest(fields["app_token"].encode(), app.app_token.encode()):
        raise GrantError("Invalid app_id or app_token")
    grant = Grant(client.client_id, settings.granted_scope or "global:all", "app", app.app_id)
    return _issue(grant, settings, state)


def _issue(
    grant: Grant, settings: SandboxSettings, state: SandboxState, *, family: str | None = None
) -> IssuedTokens:
    return state.issue_tokens(
        grant,
        family=family or secrets.token_hex(8),
        now=settings.clock(),
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
    )


# Each grant: the fields it needs besides `grant_type` and the client's credentials,
# and how it issues tokens.
_GRANTS: dict[str, tuple[tuple[str, ...], _IssueTokens]] = {
    "authorization_code": (("code", "redirect_uri"), _authorization_code),
    "refresh_token": (("refresh_token",), _refresh_token),
    "password": (("username", "password"), _password),
    "app": (("app_id", "app_token"), _app),
}
