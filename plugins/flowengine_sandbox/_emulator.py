"""Any spec's provider, emulated from the spec itself, under ``/_e/{spec}/{endpoint}/{host}/{path}``.

A spec registered with the sandbox (``register_spec``) has each endpoint
re-pointed at ``/_e/SPEC/ENDPOINT/`` followed by the endpoint's own host and
path, connection variables and all (``acme.zendesk.com/oauth/tokens``): every
host is served on loopback, and the connection values the address fills name the
tenant. A code is redeemable, and a token refreshable, only at the tenant it was
issued for.

The authorization endpoint asks the person (or decides, in the ``approve`` and
``deny`` consent modes) and redirects with the parameter names the spec's
callback reads, and with a value for each parameter the spec keeps. Token
endpoints tell grants apart by the spec's literal parameters, check the client
as the grant authenticates it, and answer in the shape the spec's token rules
read. Revocation (RFC 7009) forgets the token wherever the spec sends it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from flowengine import FlowSpec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowengine_sandbox._authorize import redirect_uri_problem, with_query
from flowengine_sandbox._consent_page import consent_page
from flowengine_sandbox._device import DeviceRefused, device_authorization, device_poll
from flowengine_sandbox._openid import id_token_for, is_key_set, is_userinfo, key_set, userinfo
from flowengine_sandbox._shapes import grant_of, kept_values, tenant_of, token_answer, variables_sent
from flowengine_sandbox._token import s256
from flowengine_sandbox._web import NO_STORE, settings_of, state_of
from flowengine_sandbox.settings import RegisteredClient
from flowengine_sandbox.state import AuthorizationCode, Grant, GrantError, RecordedTokenRequest

__all__ = ["emulated", "specs_of"]

_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


class _Refused(Exception):
    """An OAuth error answer (RFC 6749 §5.2): status, error code and a description without secrets."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status, self.error, self.description = status, error, description

    def response(self) -> JSONResponse:
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=NO_STORE)


def specs_of(request: Request) -> dict[str, FlowSpec]:
    """The specs registered with the sandbox serving ``request``, by name."""
    specs: dict[str, FlowSpec] = request.app.state.sandbox_specs
    return specs


async def emulated(request: Request) -> Response:
    """Any request to an emulated endpoint: the authorization page, a token request, or a revocation."""
    spec = specs_of(request).get(request.path_params["spec"])
    endpoint = request.path_params["endpoint"]
    if spec is None or endpoint not in spec.endpoints:
        return _Refused(404, "invalid_request", "no such emulated endpoint").response()
    audience = f"{spec.name}?{tenant_of(spec, endpoint, request.path_params['rest'])}"
    authorization = spec.authorization
    try:
        if authorization is not None and endpoint == authorization.endpoint and request.method != "DELETE":
            fields = await _fields(request) if request.method == "POST" else dict(request.query_params)
            return _authorize(request, spec, fields, audience)
        if request.method == "GET" and is_key_set(spec, endpoint):
            return key_set(request)
        if request.method == "GET" and is_userinfo(spec, endpoint):
            return userinfo(request, request.headers)
        if spec.device is not None and endpoint == spec.device.endpoint and request.method == "POST":
            fields = await _fields(request)
            client = _client(request, spec.device, fields)
            return device_authorization(request, spec, client, fields, audience)
        return await _token_or_revocation(request, spec, endpoint, audience)
    except _Refused as refused:
        return refused.response()


# --- the authorization endpoint -------------------------------------------------------------


def _authorize(request: Request, spec: FlowSpec, fields: Mapping[str, str], audience: str) -> Response:
    assert spec.authorization is not None
    settings = settings_of(request)
    sent = variables_sent(spec.authorization.params)
    client = settings.clients.get(fields.get(sent.get("client_id", "client_id"), ""))
    if client is None:
        raise _Refused(400, "invalid_request", "unknown client_id")
    redirect_uri = fields.get(sent.get("redirect_uri", "redirect_uri"), "")
    problem = redirect_uri_problem(redirect_uri, client.registered_domain) if redirect_uri else "is missing"
    if problem is not None:
        raise _Refused(400, "invalid_request", f"redirect_uri {problem}")
    state = fields.get(sent.get("state", "state"))
    nonce = fields.get(sent.get("nonce", "nonce"))
    challenge = fields.get(sent.get("code_challenge", "code_challenge"))
    method = fields.get(sent.get("code_challenge_method", "code_challenge_method"))
    if (challenge or method) and (method != "S256" or not _S256_CHALLENGE.fullmatch(challenge or "")):
        return _redirect(redirect_uri, {"error": "invalid_request"}, spec, state)
    scope = fields.get(sent.get("scope", "scope")) or spec.scope_separator.join(
        spec.authorization.default_scopes
    )
    decision = fields.get("decision")
    if request.method == "GET":
        if settings.consent == "ask":
            return consent_page(request, spec, client.client_id, fields, scope)
        decision = "grant" if settings.consent == "approve" else "deny"
    if decision != "grant":
        denied = spec.callback.denied_errors[0] if spec.callback.denied_errors else "access_denied"
        outcome = {
            spec.callback.error: denied,
            spec.callback.error_description: "The user denied your request.",
        }
        return _redirect(redirect_uri, outcome, spec, state)
    code = state_of(request).issue_code(
        AuthorizationCode(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=settings.granted_scope or scope,
            user_id=settings.user.id,
            code_challenge=challenge,
            code_challenge_method=method,
            expires_at=settings.clock() + settings.code_ttl,
            audience=audience,
            nonce=nonce,
        )
    )
    return _redirect(redirect_uri, {spec.callback.code: code, **kept_values(spec)}, spec, state)


def _redirect(redirect_uri: str, outcome: Mapping[str, str], spec: FlowSpec, state: str | None) -> Response:
    params = dict(outcome) if state is None else {**outcome, spec.callback.state: state}
    return Response(status_code=302, headers={**NO_STORE, "Location": with_query(redirect_uri, params)})


# --- token endpoints and revocation --------------------------------------------------------------


async def _fields(request: Request) -> dict[str, str]:
    """A request's parameters, however the spec sends them: JSON, a form, or the query string."""
    body = await request.body()
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if kind == "application/json":
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise _Refused(400, "invalid_request", "the body must be a JSON object")
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        if body:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError):
        raise _Refused(400, "invalid_request", "the body cannot be read") from None
    return dict(request.query_params)


async def _token_or_revocation(request: Request, spec: FlowSpec, endpoint: str, audience: str) -> Response:
    settings, state = settings_of(request), state_of(request)
    fields = await _fields(request)
    grant = grant_of(spec, endpoint, fields)
    revoking = grant is None and spec.revocation is not None and endpoint == spec.revocation.endpoint
    response: Response
    try:
        if grant is not None:
            response = _token(request, spec, grant, fields, audience)
        elif revoking:
            response = _revoke(request, spec.revocation, fields)
        else:
            raise _Refused(400, "unsupported_grant_type", "no grant of this spec matches the request")
    except _Refused as refused:
        response = refused.response()
    state.record(
        RecordedTokenRequest(
            path=request.url.path,
            content_type=request.headers.get("content-type", ""),
            grant_type=grant or ("revocation" if revoking else None),
            fields=fields,
            client_auth="basic"
            if request.headers.get("authorization", "").lower().startswith("basic ")
            else "body",
            received_at=settings.clock(),
            status=response.status_code,
        )
    )
    return response


def _client(request: Request, rule: Any, fields: Mapping[str, str]) -> RegisteredClient:
    """The client, authenticated as the request says: HTTP Basic, or its id and secret in the body."""
    settings = settings_of(request)
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    sent = variables_sent(rule.params)
    if rule.client_auth == "basic":
        if scheme.lower() != "basic":
            raise _Refused(401, "invalid_client", "HTTP Basic client authentication is required")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _Refused(401, "invalid_client", "malformed HTTP Basic credentials") from None
        client_id, secret = unquote_plus(user), unquote_plus(password)
    else:
        client_id = fields.get(sent.get("client_id", "client_id"), "")
        secret = fields.get(sent.get("client_secret", "client_secret"), "")
    if not client_id and secret:  # Stripe: the platform's secret key alone names the platform
        client_id = next((c.client_id for c in settings.clients.values() if c.client_secret == secret), "")
    client = settings.clients.get(client_id)
    if client is not None and rule.client_auth == "body" and "client_secret" not in sent:
        return client  # a public client (a device, a native app): the spec sends no secret here
    if client is None or not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise _Refused(
            401 if rule.client_auth == "basic" else 400, "invalid_client", "client authentication failed"
        )
    return client


def _token(
    request: Request, spec: FlowSpec, grant: str, fields: Mapping[str, str], audience: str
) -> Response:
    settings, state = settings_of(request), state_of(request)
    rule = spec.grants[grant]
    client = _client(request, rule, fields)
    sent = variables_sent(rule.params)
    now = settings.clock()
    nonce = None
    try:
        if grant == "authorization_code":
            issued, nonce = _redeem(request, fields, sent, client, audience)
        elif spec.device is not None and grant == spec.device.grant:
            issued = _poll(request, fields.get(sent.get("device_code", "device_code"), ""), client, audience)
        elif grant == "refresh_token":
            issued = state.refresh(
                fields[sent["refresh_token"]],
                client_id=client.client_id,
                now=now,
                rotate=settings.rotate_refresh_tokens,
                access_ttl=settings.access_ttl,
                refresh_ttl=settings.refresh_ttl,
            )
            if issued.grant.audience != audience:
                raise GrantError("The refresh token was issued for another tenant")
        else:  # a grant with no person: the token acts for the client's one user
            scope = fields.get(sent.get("scope", "scope"), "")
            issued = state.issue_tokens(
                Grant(client.client_id, scope, "user", settings.user.id, audience),
                family=secrets.token_hex(8),
                now=now,
                access_ttl=settings.access_ttl,
                refresh_ttl=settings.refresh_ttl,
            )
    except GrantError as error:
        raise _Refused(400, "invalid_grant", error.description) from None
    except DeviceRefused as refused:
        raise _Refused(400, refused.error, refused.description) from None
    refreshable = "refresh_token" in spec.grants
    body = token_answer(
        spec,
        access_token=issued.access_token,
        refresh_token=issued.refresh_token if refreshable else None,
        expires_in=issued.expires_in,
        scope=issued.grant.scope,
        user_id=issued.grant.ref_id,
        now=now,
    )
    if spec.openid is not None and grant != "refresh_token":
        body["id_token"] = id_token_for(
            request,
            spec,
            audience=audience,
            client_id=client.client_id,
            access_token=issued.access_token,
            nonce=nonce,
        )
    return JSONResponse(body, headers=NO_STORE)


def _poll(request: Request, device_code: str, client: RegisteredClient, audience: str) -> Any:
    """A device poll (RFC 8628 §3.4): the tokens the approved device authorization buys."""
    settings = settings_of(request)
    device = device_poll(request, device_code, client, audience)
    grant = Grant(client.client_id, device.scope, "user", settings.user.id, audience)
    return state_of(request).issue_tokens(
        grant,
        family=secrets.token_hex(8),
        now=settings.clock(),
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
    )


def _redeem(
    request: Request,
    fields: Mapping[str, str],
    sent: Mapping[str, str],
    client: RegisteredClient,
    audience: str,
) -> tuple[Any, str | None]:
    settings, state = settings_of(request), state_of(request)
    code = state.take_code(fields.get(sent.get("code", "code"), ""))
    if code.client_id != client.client_id:
        raise GrantError("The authorization code was issued to another client")
    if code.audience != audience:
        raise GrantError("The authorization code was issued for another tenant")
    if settings.clock() >= code.expires_at:
        raise GrantError("The authorization code has expired")
    if "redirect_uri" in sent and fields.get(sent["redirect_uri"]) != code.redirect_uri:
        raise GrantError("redirect_uri differs from the one of the authorization request")
    verifier = fields.get(sent.get("code_verifier", "code_verifier")) or None
    if code.code_challenge is not None and (
        verifier is None or not hmac.compare_digest(s256(verifier), code.code_challenge)
    ):
        raise GrantError("code_verifier does not match the code_challenge")
    grant = Grant(client.client_id, code.scope, "user", code.user_id, audience)
    issued = state.issue_tokens(
        grant,
        family=code.family,
        now=settings.clock(),
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
    )
    return issued, code.nonce


def _revoke(request: Request, rule: Any, fields: Mapping[str, str]) -> Response:
    sent = variables_sent(rule.params)
    if "client_id" in sent or "client_secret" in sent or rule.client_auth == "basic":
        _client(request, rule, fields)
    token = fields.get(sent["token"]) if "token" in sent else _token_in_headers(request, rule)
    if not token:
        raise _Refused(400, "invalid_request", "no token to revoke")
    state_of(request).revoke(token)  # RFC 7009 §2.2: an unknown token is no error
    return Response(status_code=200, headers=NO_STORE)


def _token_in_headers(request: Request, rule: Any) -> str | None:
    """The token a header carries, read by the header's template (``Bearer {token}``)."""
    for name, template in rule.headers.items():
        if "{token}" not in template:
            continue
        prefix, _, suffix = template.partition("{token}")
        value = request.headers.get(name, "")
        if value.startswith(prefix) and value.endswith(suffix):
            return value[len(prefix) : len(value) - len(suffix)] or None
    return None
