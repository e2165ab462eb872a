"""Token requests built from a spec, and token responses read by it (sans-I/O).

``build_token_request`` turns a grant of the spec and a set of values into an
``HttpRequest``; ``read_token_response`` turns whatever came back into a
``Token`` or a typed ``ProviderError``, never a ``JSONDecodeError``, a
``KeyError`` or a ``RecursionError`` (SECURITY.md 8, 9, 26). A token is safe to
put in a header or it is refused (29). The readers are given the secrets the
request sent (``sent``) and scrub them from every text they keep of the answer (28).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import quote_plus, urlencode

from flowengine import _templates
from flowengine._answer import Unreadable, answer_body, dig, expires_in_seconds, seconds_until
from flowengine._errors import ConfigError, ProviderError
from flowengine._http import HttpRequest, HttpResponse
from flowengine._records import AccountRef, Token
from flowengine._retry import parse_retry_after
from flowengine._security import scrub_error, scrub_value
from flowengine._spec import AccountRule, FlowSpec, TokenRequest

__all__ = [
    "account_in",
    "build_request",
    "build_token_request",
    "error_response",
    "read_account_response",
    "read_revocation_response",
    "read_token_response",
    "render_params",
]

_MAX_MESSAGE = 300
#: Visible ASCII, no space: RFC 6750's b64token and every real token fit, and nothing in it can
#: end a header line (CR, LF) or be read differently by another HTTP stack (SECURITY.md 29).
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
#: ``json.dumps(..., separators=(",", ":"))`` without making its encoder at every request.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def render_params(params: Mapping[str, str], values: Mapping[str, str | None]) -> dict[str, str]:
    """Fill each parameter template; parameters naming a missing value are left out."""
    out: dict[str, str] = {}
    for name, template in params.items():
        value = _templates.render(template, values)
        if value is not None:
            out[name] = value
    return out


def build_token_request(
    spec: FlowSpec, grant: str, url: str, values: Mapping[str, str | None], user_agent: str = "flowengine"
) -> HttpRequest:
    """The token request for ``grant``, encoded and authenticated as the spec says."""
    return build_request(spec.grants[grant], url, values, user_agent)


def build_request(
    rule: TokenRequest,
    url: str,
    values: Mapping[str, str | None],
    user_agent: str = "flowengine",
    *,
    assertion: Mapping[str, str] | None = None,
) -> HttpRequest:
    """A request to a token-style endpoint (token, revocation) as ``rule`` encodes and authenticates it.

    ``assertion``: the ``client_assertion`` parameters of a signed client authentication
    (``client_secret_jwt``, ``private_key_jwt``), added to the body.
    """
    params = render_params(rule.params, values)
    if rule.client_auth in ("client_secret_jwt", "private_key_jwt"):
        if not assertion:
            raise ConfigError(f"client_auth {rule.client_auth} needs a signed client assertion")
        params.update(assertion)
    headers = {"accept": "application/json", "user-agent": user_agent}
    headers.update({name.lower(): value for name, value in render_params(rule.headers, values).items()})
    if rule.client_auth == "basic":
        # RFC 6749 §2.3.1 and Appendix B: both parts form-urlencoded before Base64.
        user = quote_plus(values.get("client_id") or "", safe="*")
        password = quote_plus(values.get("client_secret") or "", safe="*")
        headers["authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    if rule.encoding == "json":
        headers["content-type"] = "application/json"
        body = _COMPACT_JSON.encode(params).encode()
    elif rule.encoding == "query":
        url, body = (f"{url}{'&' if '?' in url else '?'}{urlencode(params)}" if params else url), b""
    else:
        headers["content-type"] = "application/x-www-form-urlencoded"
        body = urlencode(params).encode()
    return HttpRequest(rule.method, url, headers, body)


def _json_body(response: HttpResponse) -> Any:
    """What the answer carries: JSON, a form or a query string (``_answer``), else ``Unreadable``."""
    return answer_body(response.body, response.content_type)


def _invalid(message: str, status: int) -> ProviderError:
    return ProviderError(message, code="invalid_token_response", status=status)


def _expires_in(spec: FlowSpec, body: Mapping[str, Any], now: float, status: int) -> int | None:
    """Seconds until expiry: from ``expires_at`` when the spec names it and the answer has it."""
    rules = spec.token
    why = ""
    try:
        if rules.expires_at is not None:
            left = seconds_until(dig(body, rules.expires_at), now)
            if left is not None:
                return left
        return expires_in_seconds(dig(body, rules.expires_in), rules.expires_in_unit)
    except ValueError as exc:
        why = str(exc)
    raise _invalid(why, status)  # outside the except: a typed refusal, not a ValueError in disguise


def _without(body: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """``body`` without the fields read from it (nested ones too): the token's ``extra``."""
    out = dict(body)
    for path in paths:
        if path in out:
            del out[path]
            continue
        head, _, rest = path.partition(".")
        if rest and isinstance(out.get(head), Mapping):
            inner = _without(out[head], [rest])
            if inner:
                out[head] = inner
            else:
                del out[head]
    return out


def _token_body(spec: FlowSpec, response: HttpResponse, now: float) -> dict[str, Any]:
    """The answer's JSON object, or the ``ProviderError`` the answer amounts to."""
    body = _json_body(response)
    status = response.status
    if not 200 <= status < 300:
        raise _error_for(spec, response, body, now)
    says_error = isinstance(body, dict) and isinstance(body.get("error"), str)
    if says_error and not dig(body, spec.token.access_token):
        raise _error_for(spec, response, body, now)  # a 200 that says "error": believe the error
    if not isinstance(body, dict):
        kind = body.why if isinstance(body, Unreadable) else "JSON that is not an object"
        raise _invalid(f"the token endpoint answered {status} with {kind}", status)
    return body


def _finish(error: ProviderError, sent: Collection[str]) -> ProviderError:
    """The reader's error with the request's secrets scrubbed out, then cut to a readable length."""
    scrub_error(error, sent)
    if len(error.message) > _MAX_MESSAGE:
        error.message = error.message[: _MAX_MESSAGE - 1] + "…"
        error.args = (error.message,)
    return error


@functools.lru_cache(maxsize=64)
def _lowered(names: tuple[str, ...]) -> frozenset[str]:
    """``names`` in lower case: a spec's token types, compared without case (read once per spec)."""
    return frozenset(name.lower() for name in names)


def _header_safe(value: str, what: str, status: int) -> str:
    if not _HEADER_SAFE.fullmatch(value):
        raise _invalid(f"the {what} holds characters that are not visible ASCII (unsafe in a header)", status)
    return value


def read_token_response(
    spec: FlowSpec,
    response: HttpResponse,
    *,
    client_id: str,
    now: float,
    sent: Collection[str] = (),
    default_account: AccountRef | None = None,
    requested_scope: str | None = None,
    account_required: bool = True,
    old_refresh_token: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> Token:
    """Read a token response; raise ``ProviderError`` with a stable code if it is not a token.

    ``sent`` holds the secrets the request carried (``_security.sent_secrets``): none of
    them survives in the error's message or body, nor in ``token.extra``, whatever the
    provider echoed back. ``default_account`` names the account when the spec reads
    none from the answer (a flow's subject, or the flow itself); without it, the
    client (a grant's token). An answer without a scope granted what was asked
    (``requested_scope``, RFC 6749 §5.1), else the spec's ``default_scope``.
    ``account_required=False`` (a refresh, whose account is known) lets an answer
    leave out the account fields. ``old_refresh_token`` (a refresh) is kept when the
    answer brings no new one (RFC 6749 §6). ``fields``: more of the token's fields, that the
    answer does not say (``connection``, ``token_endpoint``, ...): the token is made once.
    """
    try:
        read = _read_token(
            spec,
            response,
            client_id=client_id,
            now=now,
            default_account=default_account,
            requested_scope=requested_scope,
            account_required=account_required,
        )
    except ProviderError as exc:
        raise _finish(exc, sent) from None
    if read["refresh_token"] is None:
        read["refresh_token"] = old_refresh_token
    if sent and read["extra"]:
        read["extra"] = scrub_value(read["extra"], sent)
    return Token(**read, **(fields or {}))


def _read_token(
    spec: FlowSpec,
    response: HttpResponse,
    *,
    client_id: str,
    now: float,
    default_account: AccountRef | None,
    requested_scope: str | None,
    account_required: bool,
) -> dict[str, Any]:
    """The fields of the token the answer holds, by name."""
    body = _token_body(spec, response, now)
    status = response.status
    rules = spec.token
    access_token = dig(body, rules.access_token)
    if not isinstance(access_token, str) or not access_token:
        raise _invalid(f"the token response has no {rules.access_token}", status)
    _header_safe(access_token, "access token", status)
    token_type = dig(body, rules.token_type)
    if token_type is None or token_type == "":
        token_type = rules.default_token_type
    if not isinstance(token_type, str):
        raise _invalid(f"the token response has no {rules.token_type}", status)
    _header_safe(token_type, "token_type", status)
    if token_type.lower() not in _lowered(rules.token_types):
        raise _invalid(f"token_type {token_type[:40]!r} is not one of {list(rules.token_types)}", status)
    expires_in = _expires_in(spec, body, now, status)
    refresh_token = dig(body, rules.refresh_token)
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise _invalid(f"{rules.refresh_token} is not a string", status)
    if refresh_token is not None:
        _header_safe(refresh_token, "refresh token", status)
    scope = dig(body, rules.scope)
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scope = spec.scope_separator.join(scope)
    if scope is not None and not isinstance(scope, str):
        raise _invalid(f"{rules.scope} is not a string", status)
    default = default_account or AccountRef("client", client_id)
    account = _account(spec, body, default, status) if account_required else default
    # Never let the leeway put expiry before receipt: a short-lived token keeps half its life.
    leeway = min(rules.leeway, expires_in / 2) if expires_in is not None else 0
    known = [rules.access_token, rules.token_type, rules.expires_in, rules.refresh_token, rules.scope]
    known += [rules.expires_at] if rules.expires_at else []
    return {
        "provider": spec.name,
        "account": account,
        "access_token": access_token,
        "token_type": token_type,
        "obtained_at": now,
        "expires_at": None if expires_in is None else now + expires_in - leeway,
        "refresh_token": refresh_token,
        "scope": scope if scope is not None else requested_scope or rules.default_scope,
        "client_id": client_id,
        "header_scheme": spec.usage.header_scheme,
        "extra": _without(body, known),
    }


def read_revocation_response(
    spec: FlowSpec, response: HttpResponse, *, now: float, sent: Collection[str] = ()
) -> None:
    """Accept a revocation answer (RFC 7009 §2.2: any 200, even for an unknown token) or raise.

    ``sent``: as for ``read_token_response``, the secrets to scrub from an error.
    """
    if 200 <= response.status < 300:
        return
    raise _finish(_error_for(spec, response, _json_body(response), now, endpoint="revocation"), sent)


def error_response(
    spec: FlowSpec, response: HttpResponse, *, now: float, sent: Collection[str] = (), endpoint: str = "token"
) -> ProviderError:
    """The ``ProviderError`` a token-style endpoint's error answer amounts to, secrets scrubbed.

    ``endpoint`` names the endpoint that answered, in the message ("the device
    authorization endpoint answered 400: …").
    """
    return _finish(_error_for(spec, response, _json_body(response), now, endpoint=endpoint), sent)


def _account(spec: FlowSpec, body: Mapping[str, Any], default: AccountRef, status: int) -> AccountRef:
    rule = spec.token.account
    if rule is None or rule.userinfo is not None:
        return default  # the answer names no account (or a userinfo request will)
    return account_in(rule, body, "the token response", status)


def account_in(rule: AccountRule, body: Mapping[str, Any], where: str, status: int) -> AccountRef:
    """The account ``rule`` reads from a JSON object (a token answer, a userinfo answer)."""
    account_id = dig(body, rule.id)
    if isinstance(account_id, bool) or not isinstance(account_id, str | int) or account_id == "":
        raise _invalid(f"{where} has no account id at {rule.id}", status)
    account_type = dig(body, rule.type) if rule.type else rule.default_type
    if not isinstance(account_type, str) or not account_type:
        raise _invalid(f"{where} has no account type at {rule.type}", status)
    return AccountRef(account_type, account_id)


def read_account_response(rule: AccountRule, response: HttpResponse) -> AccountRef:
    """The account a userinfo endpoint's answer names, or the ``ProviderError`` it amounts to."""
    body = _json_body(response)
    if not 200 <= response.status < 300 or not isinstance(body, dict):
        raise ProviderError(
            f"the userinfo endpoint answered {response.status} without a JSON object",
            code="invalid_token_response",
            status=response.status,
        )
    return account_in(rule, body, "the userinfo answer", response.status)


def _error_for(
    spec: FlowSpec, response: HttpResponse, body: Any, now: float, *, endpoint: str = "token"
) -> ProviderError:
    status = response.status
    info: dict[str, Any] = body if isinstance(body, dict) else {}
    error = info.get("error") if isinstance(info.get("error"), str) else None
    description = info.get("error_description") if isinstance(info.get("error_description"), str) else None
    what = error or (f"a {response.content_type} body" if response.content_type else "no error code")
    message = f"the {endpoint} endpoint answered {status}: {what}"
    if description:
        message += f" ({description})"
    retry_after = parse_retry_after(response.headers, now)
    if status in spec.token.rate_limit_status:
        code, retryable = "rate_limited", True
    elif status >= 500:
        code, retryable = "provider_unavailable", True
    elif error == "invalid_grant":
        code, retryable = "invalid_grant", False
    elif error == "invalid_client":
        code, retryable = "invalid_client", False
    elif status == 401:
        code, retryable = "unauthorized", False
    else:
        code, retryable = "provider_error", False
    return ProviderError(
        message, code=code, retryable=retryable, status=status, body=info, retry_after=retry_after
    )
