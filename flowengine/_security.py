"""The small security primitives: state, PKCE, digests, redirect-URI rules, redaction, scrubbing.

Kept in one place so that each rule has one implementation (SECURITY.md 1, 2,
10, 13, 28) and the tests that prove them have one thing to aim at.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import html
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from flowengine._errors import ConfigError, ProviderError
from flowengine._http import HttpRequest
from flowengine._urls import UrlRefused, is_loopback, judge

__all__ = [
    "PUBLIC_VALUES",
    "REDACTED",
    "SECRET_FIELDS",
    "check_redirect_uri",
    "digest",
    "digests_equal",
    "fingerprint",
    "is_loopback",
    "pkce_challenge",
    "redact",
    "scrub",
    "scrub_error",
    "scrub_value",
    "sent_secrets",
]

#: Parameter and field names whose values are never shown.
SECRET_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "code",
        "code_verifier",
        "client_secret",
        "password",
        "app_token",
        "state",
        "authorization",
        "id_token",
    }
)


def pkce_challenge(verifier: str) -> str:
    """The S256 challenge of a verifier: BASE64URL(SHA256(ASCII(verifier))), unpadded."""
    raw = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def digest(value: str) -> str:
    """SHA-256 hex digest: how ``state``, session ids and codes are kept at rest."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def digests_equal(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two digests; None never equals anything."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret, safe for logs and pages."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def check_redirect_uri(uri: str, *, registered_domain: str | None) -> None:
    """Refuse a redirect URI that could leak a code (SECURITY.md 10, 27).

    It must be a URL the judge of ``_urls`` accepts (absolute, no fragment, no user
    information, nothing browsers read differently), ``https`` unless on loopback,
    and, when a domain is registered, on that domain or below it (port and path free).
    A pair judged good is remembered (an engine starts every flow with the same one);
    a refusal is judged again each time.
    """
    if isinstance(uri, str) and isinstance(registered_domain, str | None):
        _remembered_redirect_uri(uri, registered_domain)
    else:
        _judge_redirect_uri(uri, registered_domain)


def _judge_redirect_uri(uri: str, registered_domain: str | None) -> None:
    shown = repr(uri[:200]) if isinstance(uri, str) else type(uri).__name__
    try:
        url = judge(uri)
    except UrlRefused as exc:
        raise ConfigError(f"redirect URI {shown} {exc.reason}", code="redirect_uri_invalid") from None
    if url.scheme == "http" and not url.loopback:
        raise ConfigError(
            f"redirect URI {shown} uses http:// off loopback; use https://", code="redirect_uri_invalid"
        )
    if registered_domain:
        domain = registered_domain.lower().rstrip(".")
        if url.host != domain and not url.host.endswith("." + domain):
            raise ConfigError(
                f"redirect URI {shown} is not on the registered domain {domain!r}",
                code="redirect_uri_invalid",
            )


_remembered_redirect_uri = functools.lru_cache(maxsize=256)(_judge_redirect_uri)


def redact(params: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``params`` with every secret field replaced by its fingerprint."""
    return {
        key: (fingerprint(str(value)) if key.lower() in SECRET_FIELDS and value else value)
        for key, value in params.items()
    }


# --- scrubbing what a provider echoes back (SECURITY.md 28) -------------------------------------

#: Request values that are not secret: the browser sees them in the authorization URL, or they name
#: things. Every other value a request carries (secret, code, verifier, tokens, assertions,
#: passwords, any spec input) is scrubbed from what the provider answers.
PUBLIC_VALUES = frozenset(
    {"client_id", "redirect_uri", "scope", "code_challenge", "code_challenge_method", "token_type_hint"}
)
#: What a scrubbed secret becomes.
REDACTED = "[redacted]"
#: A provider that cuts its text short may keep the start of a secret: this much of one is scrubbed.
_MIN_PREFIX = 8
_UPPER_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def sent_secrets(values: Mapping[str, str | None], request: HttpRequest | None = None) -> frozenset[str]:
    """Every secret a request sends: its values but ``PUBLIC_VALUES``, and its Authorization header.

    ``values`` are the template variables the request was built from; ``request``
    adds the ``Authorization`` header (HTTP Basic carries the client secret in it).
    """
    found = {value for name, value in values.items() if value and name not in PUBLIC_VALUES}
    header = request.headers.get("authorization", "") if request is not None else ""
    if header:
        found |= {header, header.partition(" ")[2]}
    return frozenset(value for value in found if value)


def _forms(secret: str) -> set[str]:
    """The ways a secret may come back: as sent, percent-encoded either way, JSON- and HTML-escaped."""
    encoded = {quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}
    forms = {
        secret,
        html.escape(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    forms |= encoded | {_UPPER_ESCAPE.sub(lambda m: m.group().lower(), form) for form in encoded}
    return {form for form in forms if form}


def _all_forms(secrets: Iterable[str], seen: str | None = None) -> list[str]:
    """Every form of every secret, longest first; only secrets that may be in ``seen``, when given.

    Every form of a secret begins with the secret's first characters up to its
    first one that some form escapes (``_head``): where that head is not in the
    text, no form and no cut-off copy is either.
    """
    wanted = (s for s in secrets if s and (seen is None or _head(s) in seen))
    return sorted({form for secret in wanted for form in _forms(secret)}, key=len, reverse=True)


#: Characters no form of a secret escapes (percent-encoding, JSON, HTML all keep them), up to
#: ``_MIN_PREFIX`` of them.
_KEPT_RUN = re.compile(rf"[A-Za-z0-9\-_.~]{{0,{_MIN_PREFIX}}}")


def _head(secret: str) -> str:
    """The start of ``secret`` every form of it starts with: up to ``_MIN_PREFIX`` kept characters."""
    found = _KEPT_RUN.match(secret)
    return found.group() if found is not None else ""


def _scrub(text: str, forms: list[str]) -> str:
    for form in forms:  # longest first: a form inside another is not left half-replaced
        if form in text:
            text = text.replace(form, REDACTED)
    for form in forms:
        if len(form) > _MIN_PREFIX:
            text = _scrub_cut(text, form)
    return text


def _scrub_cut(text: str, form: str) -> str:
    """``text`` without any run of ``_MIN_PREFIX`` or more characters starting ``form`` (a cut-off copy)."""
    head = form[:_MIN_PREFIX]
    start = text.find(head)
    if start < 0:
        return text
    out: list[str] = []
    done = 0
    while start >= 0:
        end = start + _MIN_PREFIX
        while end < len(text) and end - start < len(form) and text[end] == form[end - start]:
            end += 1
        out += [text[done:start], REDACTED]
        done = end
        start = text.find(head, end)
    out.append(text[done:])
    return "".join(out)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret in ``secrets`` replaced by ``[redacted]``.

    Also scrubbed: the first eight or more characters of a secret wherever they stand
    (a provider, or a length cap, cut the rest off).
    """
    return _scrub(text, _all_forms(secrets, text))


def scrub_value(value: Any, secrets: Collection[str]) -> Any:
    """``value`` (a JSON-like document) with ``scrub`` applied to every string in it, keys included."""
    forms = _all_forms(secrets, "\0".join(_strings(value)))

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return _scrub(node, forms)
        if isinstance(node, dict):
            return {walk(k): walk(v) for k, v in node.items()}
        if isinstance(node, _SEQUENCES):
            return [walk(item) for item in node]
        return node

    return walk(value) if forms else value


_SEQUENCES = (list, tuple)


def _strings(value: Any) -> list[str]:
    """Every string in a JSON-like document, keys included."""
    found: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            stack += node.keys()
            stack += node.values()
        elif isinstance(node, _SEQUENCES):
            stack += node
    return found


def scrub_error(error: ProviderError, secrets: Collection[str]) -> ProviderError:
    """``error`` with the secrets a request sent scrubbed from its message and body, in place.

    What the provider wrote (``error_description``, its whole error body) may echo the
    request back; after this nothing of it that is stored, raised, logged or shown does.
    """
    if secrets:
        error.message = scrub(error.message, secrets)
        error.args = (error.message,)
        error.body = scrub_value(error.body, secrets)
    return error
