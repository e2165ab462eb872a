"""The authorization endpoint: validate the request, ask the person, redirect back.

`GET /oauth/authorize` shows the consent page (or, in the `approve`/`deny` consent
modes, redirects straight away); the page POSTs the decision to the same path, which
validates the request again from the form and redirects to the client's callback.
"""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlencode, urlsplit

from attrs import frozen
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from flowengine_sandbox._web import (
    NO_STORE,
    invalid_request,
    last_values,
    read_form,
    settings_of,
    state_of,
)
from flowengine_sandbox.settings import RegisteredClient, SandboxSettings
from flowengine_sandbox.state import AuthorizationCode

__all__ = ["authorize_decision", "authorize_page", "redirect_uri_problem", "with_query"]

Decision = Literal["grant", "deny"]
_DECISIONS: dict[str, Decision] = {"grant": "grant", "deny": "deny"}

DENIED = {
    "error_reason": "user_denied",
    "error": "access_denied",
    "error_description": "The user denied your request.",
}

_SCOPE = re.compile(r"(global|user|org|space|app):(read|write|delete|all)")
# An S256 challenge is the unpadded base64url of a SHA-256 digest (RFC 7636 §4.2).
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")

_PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@frozen
class _AuthorizationRequest:
    client: RegisteredClient
    redirect_uri: str
    scope: str  # as requested, whitespace normalised; "" when none was asked
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None

    def form_fields(self) -> dict[str, str]:
        """Return the fields that carry this request through the consent form."""
        fields = {
            "client_id": self.client.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": self.scope,
            "state": self.state,
            "code_challenge": self.code_challenge,
            "code_challenge_method": self.code_challenge_method,
        }
        return {name: value for name, value in fields.items() if value is not None}


class _RedirectedError(Exception):
    """An error reported to the client through its (validated) redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


async def authorize_page(request: Request) -> Response:
    """GET /oauth/authorize: the consent page, or the outcome in approve/deny mode."""
    return _answer(request, last_values(request.query_params.multi_items()), decision=None)


async def authorize_decision(request: Request) -> Response:
    """POST /oauth/authorize: the person's decision, redirected to the client."""
    form = await read_form(request)
    decision = _DECISIONS.get(form.get("decision", ""))
    if decision is None:
        raise invalid_request("decision must be 'grant' or 'deny'")
    return _answer(request, form, decision=decision)


def redirect_uri_problem(redirect_uri: str, registered_domain: str) -> str | None:
    """Return why the redirect URI is refused for the domain, or None if it is fine."""
    # Refuse what browsers and urllib may parse differently (`\`, spaces, controls), and
    # what a Location header cannot carry as sent (non-ASCII must be percent-encoded).
    if not (redirect_uri.isascii() and redirect_uri.isprintable()) or any(c in redirect_uri for c in " \\"):
        return "contains characters that are not allowed in a URL"
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https"):
        return "must be an absolute http or https URL"
    if "#" in redirect_uri:
        return "must not contain a fragment"
    if "@" in parts.netloc:
        return "must not contain user information"
    try:
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return "has an invalid port"
    host = parts.hostname or ""
    domain = registered_domain.lower()
    if host == domain or (not _is_ip_address(domain) and host.endswith("." + domain)):
        return None
    return f"is not on the registered domain {domain}"


def with_query(uri: str, params: Mapping[str, str]) -> str:
    """Return the URI, exactly as sent, with the parameters appended to its query."""
    # No urlunsplit: it would normalise the client's URI. (Fragments are refused earlier.)
    if not urlsplit(uri).query:
        return uri.removesuffix("?") + "?" + urlencode(params)
    return uri + "&" + urlencode(params)


def _answer(request: Request, params: Mapping[str, str], decision: Decision | None) -> Response:
    settings = settings_of(request)
    client, redirect_uri = _checked_redirect_target(params, settings)
    try:
        authorization = _checked_request(params, client, redirect_uri)
    except _RedirectedError as error:
        outcome = {"error": error.error, "error_description": error.description}
        return _redirect(redirect_uri, outcome, params.get("state"))
    if decision is None:
        if settings.consent == "ask":
            return _consent_page(request, authorization, settings)
        decision = "grant" if settings.consent == "approve" else "deny"
    if decision == "deny":
        return _redirect(redirect_uri, DENIED, authorization.state)
    code = state_of(request).issue_code(
        AuthorizationCode(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=settings.granted_scope or authorization.scope or "global:all",
            user_id=settings.user.id,
            code_challenge=authorization.code_challenge,
            code_challenge_method=authorization.code_challenge_method,
            expires_at=settings.clock() + settings.code_ttl,
        )
    )
    return _redirect(redirect_uri, {"code": code}, authorization.state)


def _checked_redirect_target(
    params: Mapping[str, str], settings: SandboxSettings
) -> tuple[RegisteredClient, str]:
    # Until the redirect URI is vouched for, errors are answered here, never redirected.
    for name in ("client_id", "redirect_uri"):
        if not params.get(name):
            raise invalid_request(f"Missing required parameter: {name}")
    client = settings.clients.get(params["client_id"])
    if client is None:
        raise invalid_request(f"Unknown client_id {params['client_id']!r}")
    redirect_uri = params["redirect_uri"]
    problem = redirect_uri_problem(redirect_uri, client.registered_domain)
    if problem is not None:
        raise invalid_request(f"redirect_uri {problem}")
    return client, redirect_uri


def _checked_request(
    params: Mapping[str, str], client: RegisteredClient, redirect_uri: str
) -> _AuthorizationRequest:
    # The official clients send response_type=code; the legacy docs omit it.
    response_type = params.get("response_type", "code")
    if response_type != "code":
        raise _RedirectedError(
            "unsupported_response_type", f"response_type {response_type!r} is not supported"
        )
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is not None or method is not None:
        if method != "S256":
            # Also when absent: RFC 7636 would default to `plain`, which is never accepted.
            raise _RedirectedError("invalid_request", "code_challenge_method must be S256")
        if challenge is None or not _S256_CHALLENGE.fullmatch(challenge):
            raise _RedirectedError("invalid_request", "code_challenge must be 43 base64url characters")
    scopes = params.get("scope", "").split()
    unknown = [scope for scope in scopes if not _SCOPE.fullmatch(scope)]
    if unknown:
        raise _RedirectedError("invalid_scope", f"Unknown scope {unknown[0]!r}")
    return _AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        scope=" ".join(scopes),
        state=params.get("state"),
        code_challenge=challenge,
        code_challenge_method=method,
    )


def _redirect(redirect_uri: str, outcome: Mapping[str, str], state: str | None) -> Response:
    params = dict(outcome) if state is None else {**outcome, "state": state}
    # Not RedirectResponse: it re-quotes the URL, and the client's query must come back as sent.
    location = with_query(redirect_uri, params)
    return Response(status_code=302, headers={**NO_STORE, "Location": location})


def _consent_page(
    request: Request, authorization: _AuthorizationRequest, settings: SandboxSettings
) -> Response:
    escape = html.escape
    hidden = "\n".join(
        f'    <input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in authorization.form_fields().items()
    )
    scopes = "\n".join(
        f"    <li><code>{escape(scope)}</code></li>"
        for scope in (authorization.scope or "global:all").split()
    )
    client_id = escape(authorization.client.client_id)
    page = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Authorize {client_id} - Podio sandbox</title>
</head>
<body>
<main>
  <h1>Authorize {client_id}</h1>
  <p>Signed in as {escape(settings.user.email)}</p>
  <p>{client_id} asks for access to your Podio account with this scope:</p>
  <ul>
{scopes}
  </ul>
  <form method="post" action="{escape(request.url.path)}">
{hidden}
    <button name="decision" value="grant">Grant</button>
    <button name="decision" value="deny">Deny</button>
  </form>
</main>
</body>
</html>
"""
    return HTMLResponse(page, headers=_PAGE_HEADERS)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
