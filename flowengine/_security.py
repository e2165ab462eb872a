"""The small security primitives: state, PKCE, digests, redirect-URI rules, redaction.

Kept in one place so that each rule has one implementation (SECURITY.md 1, 2,
10, 13) and the tests that prove them have one thing to aim at.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from flowengine._errors import ConfigError

__all__ = [
    "SECRET_FIELDS",
    "check_redirect_uri",
    "digest",
    "digests_equal",
    "fingerprint",
    "is_loopback",
    "new_state",
    "new_verifier",
    "pkce_challenge",
    "redact",
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


def new_state() -> str:
    """A fresh OAuth ``state``: 256 random bits, URL-safe (SECURITY.md 1)."""
    return secrets.token_urlsafe(32)


def new_verifier() -> str:
    """A PKCE code verifier: 43 URL-safe characters (256 bits), per RFC 7636 §4.1."""
    return secrets.token_urlsafe(32)


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


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str, *, registered_domain: str | None) -> None:
    """Refuse a redirect URI that could leak a code (SECURITY.md 10).

    It must be absolute, without a fragment, ``https`` unless on loopback, and,
    when a domain is registered, on that domain or below it (port and path free).
    """

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"redirect URI {uri[:200]!r} {why}", code="redirect_uri_invalid")

    # Parsers disagree on backslashes, spaces and control characters (a browser
    # reads `https://evil.net\@example.com` as evil.net): refuse them outright.
    if not uri.isascii() or any(c in uri for c in "\\ \t\r\n") or not uri.isprintable():
        raise refuse("holds characters that browsers and parsers read differently")
    if "#" in uri:
        raise refuse("must not contain a fragment")
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unclosed `[` of an IPv6 host
        raise refuse("is not a valid URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise refuse("is not an absolute http(s) URL")
    if "@" in parts.netloc:
        raise refuse("must not carry user information")
    try:
        parts.port  # noqa: B018 - validates the port (numeric, 0-65535)
    except ValueError:
        raise refuse("has an invalid port") from None
    if parts.scheme == "http" and not is_loopback(host):
        raise refuse("uses http:// off loopback; use https://")
    if registered_domain:
        domain = registered_domain.lower().rstrip(".")
        if host != domain and not host.endswith("." + domain):
            raise refuse(f"is not on the registered domain {domain!r}")


def redact(params: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``params`` with every secret field replaced by its fingerprint."""
    return {
        key: (fingerprint(str(value)) if key.lower() in SECRET_FIELDS and value else value)
        for key, value in params.items()
    }
