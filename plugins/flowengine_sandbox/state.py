"""In-memory state of the sandbox: codes, tokens, and a record of every token request.

The app and the tests may touch one `SandboxState` from different threads (the
server runs in its own), so every read and write holds one lock. The state stores;
the protocol rules (expiry, redirect URI, PKCE) live with the endpoints.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Mapping
from typing import Literal

from attrs import define, field, frozen

__all__ = [
    "SECRET_FIELDS",
    "AccessTokenInfo",
    "AuthorizationCode",
    "ClientAuth",
    "DeviceCode",
    "Grant",
    "GrantError",
    "IssuedTokens",
    "RecordedTokenRequest",
    "RefType",
    "SandboxState",
    "TokenKind",
    "fingerprint",
    "redact_fields",
]

RefType = Literal["user", "app"]
ClientAuth = Literal["basic", "body", "none"]
TokenKind = Literal["access", "refresh"]

# Request fields whose values are secrets: shown only as a fingerprint.
SECRET_FIELDS = frozenset(
    {
        "access_token",
        "app_token",
        "client_secret",
        "code",
        "code_verifier",
        "password",
        "refresh_token",
    }
)


def fingerprint(secret: str) -> str:
    """Return a short stand-in for a secret: `sha256:` and the first 12 hex digits."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def redact_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """Return the fields with every secret value replaced by its fingerprint."""
    return {name: fingerprint(value) if name in SECRET_FIELDS else value for name, value in fields.items()}


class GrantError(Exception):
    """A code or refresh token that cannot be used: Podio answers 400 `invalid_grant`."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@frozen
class Grant:
    """What a token stands for: a client acting for a user or an app, within a scope."""

    client_id: str
    scope: str
    ref_type: RefType
    ref_id: int
    #: Where it was granted (an emulated spec and tenant host); tokens answer only there.
    audience: str = ""


@define
class AuthorizationCode:
    """An issued code (the code itself is the key it is stored under, never in here)."""

    client_id: str
    redirect_uri: str  # exactly as sent to the authorization endpoint
    scope: str  # the granted scope
    user_id: int
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float
    # Tokens issued from this code share its family: replaying the code revokes them.
    family: str = field(factory=lambda: secrets.token_hex(8))
    used: bool = False
    #: Where the code was issued (an emulated spec and tenant host); redeemable only there.
    audience: str = ""
    #: The authorization request's ``nonce`` (OpenID Connect), put in the ID token.
    nonce: str | None = None


@define
class DeviceCode:
    """A device authorization (RFC 8628) waiting for the person: their decision, once made."""

    client_id: str
    scope: str
    user_code: str
    expires_at: float
    audience: str = ""
    #: None while pending; True approved, False denied (at the verification page).
    approved: bool | None = None


@frozen
class AccessTokenInfo:
    """What an access token stands for, and until when."""

    grant: Grant
    expires_at: float


@define
class _IssuedToken:
    grant: Grant
    family: str
    expires_at: float


@frozen
class IssuedTokens:
    """A token response's worth of tokens."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    grant: Grant


@frozen
class RecordedTokenRequest:
    """One request received by a token endpoint, kept so that tests can assert on it."""

    path: str
    content_type: str
    grant_type: str | None
    fields: dict[str, str] = field(repr=lambda fields: repr(redact_fields(fields)))
    client_auth: ClientAuth  # how the client authenticated: HTTP Basic, the body, or not at all
    received_at: float
    status: int

    def redacted(self) -> dict[str, object]:
        """Return the record as JSON data, secrets replaced by their fingerprints."""
        return {
            "path": self.path,
            "content_type": self.content_type,
            "grant_type": self.grant_type,
            "client_auth": self.client_auth,
            "fields": redact_fields(self.fields),
            "field_lengths": {name: len(value) for name, value in self.fields.items()},
            "received_at": self.received_at,
            "status": self.status,
        }


_DEVICE_FIELDS = ("client_id", "scope", "user_code", "expires_at", "audience", "approved")


class SandboxState:
    """Codes, tokens and the token-request record of one sandbox, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, AuthorizationCode] = {}
        self._tokens: dict[TokenKind, dict[str, _IssuedToken]] = {"access": {}, "refresh": {}}
        self._requests: list[RecordedTokenRequest] = []
        self._devices: dict[str, DeviceCode] = {}

    def issue_device(self, device: DeviceCode) -> str:
        """Store a device authorization; return its device code."""
        value = secrets.token_urlsafe(32)
        with self._lock:
            self._devices[value] = device
        return value

    def decide_device(self, user_code: str, *, approve: bool) -> bool:
        """The person's decision for ``user_code``; False when no pending device has it."""
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code and device.approved is None:
                    device.approved = approve
                    return True
        return False

    def device(self, value: str) -> DeviceCode | None:
        """The device authorization behind a device code (a copy), or None."""
        with self._lock:
            found = self._devices.get(value)
            return None if found is None else DeviceCode(**{a: getattr(found, a) for a in _DEVICE_FIELDS})

    def spend_device(self, value: str) -> None:
        """A device code bought its token: it buys nothing more."""
        with self._lock:
            self._devices.pop(value, None)

    def issue_code(self, code: AuthorizationCode) -> str:
        """Store the code's record and return the new code."""
        value = secrets.token_hex(16)
        with self._lock:
            self._codes[value] = code
        return value

    def take_code(self, value: str) -> AuthorizationCode:
        """Return the code's record and mark it used: a code has exactly one attempt."""
        with self._lock:
            code = self._codes.get(value)
            if code is None:
                raise GrantError("The authorization code is not valid")
            if code.used:
                # RFC 6749 §4.1.2: a replayed code revokes what it was exchanged for.
                self._revoke_family(code.family)
                raise GrantError("The authorization code has already been used")
            code.used = True
            return code

    def issue_tokens(
        self, grant: Grant, *, family: str, now: float, access_ttl: int, refresh_ttl: int
    ) -> IssuedTokens:
        """Store and return a new access token and refresh token for the grant."""
        with self._lock:
            return self._issue(grant, family, now, access_ttl, refresh_ttl, refresh_token=None)

    def refresh(
        self,
        refresh_token: str,
        *,
        client_id: str,
        now: float,
        rotate: bool,
        access_ttl: int,
        refresh_ttl: int,
    ) -> IssuedTokens:
        """Return a new access token; with `rotate` a new refresh token too, the old one dies."""
        with self._lock:
            token = self._tokens["refresh"].get(refresh_token)
            if token is None:
                raise GrantError("The refresh token is not valid")
            if token.grant.client_id != client_id:
                raise GrantError("The refresh token was issued to another client")
            if now >= token.expires_at:
                raise GrantError("The refresh token has expired")
            if rotate:
                del self._tokens["refresh"][refresh_token]
                kept = None
            else:
                kept = refresh_token
            return self._issue(token.grant, token.family, now, access_ttl, refresh_ttl, refresh_token=kept)

    def revoke(self, value: str) -> bool:
        """Revoke a token (RFC 7009): a refresh token takes its whole family with it. False if unknown."""
        with self._lock:
            refresh = self._tokens["refresh"].get(value)
            if refresh is not None:
                self._revoke_family(refresh.family)
                return True
            return self._tokens["access"].pop(value, None) is not None

    def access_token(self, value: str) -> AccessTokenInfo | None:
        """Return what an access token stands for and until when, or None if unknown."""
        with self._lock:
            token = self._tokens["access"].get(value)
            return None if token is None else AccessTokenInfo(token.grant, token.expires_at)

    def expire(self, kind: TokenKind, *, now: float, token_fingerprint: str | None = None) -> int:
        """Expire the token with this fingerprint, or all tokens of the kind; return how many."""
        with self._lock:
            expired = 0
            for value, token in self._tokens[kind].items():
                if token_fingerprint is None or fingerprint(value) == token_fingerprint:
                    token.expires_at = min(token.expires_at, now)
                    expired += 1
            return expired

    def record(self, request: RecordedTokenRequest) -> None:
        """Add a token request to the record."""
        with self._lock:
            self._requests.append(request)

    def token_requests(self) -> list[RecordedTokenRequest]:
        """Return a copy of the record of token requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget every code, token and recorded request."""
        with self._lock:
            self._codes.clear()
            for tokens in self._tokens.values():
                tokens.clear()
            self._requests.clear()
            self._devices.clear()

    def _issue(
        self,
        grant: Grant,
        family: str,
        now: float,
        access_ttl: int,
        refresh_ttl: int,
        *,
        refresh_token: str | None,
    ) -> IssuedTokens:
        access_token = secrets.token_hex(64)  # 128 characters, like Podio's
        self._tokens["access"][access_token] = _IssuedToken(grant, family, now + access_ttl)
        if refresh_token is None:
            refresh_token = secrets.token_hex(32)
            self._tokens["refresh"][refresh_token] = _IssuedToken(grant, family, now + refresh_ttl)
        return IssuedTokens(access_token, refresh_token, access_ttl, grant)

    def _revoke_family(self, family: str) -> None:
        for tokens in self._tokens.values():
            for value in [value for value, token in tokens.items() if token.family == family]:
                del tokens[value]
