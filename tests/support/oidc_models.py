"""What the test OpenID provider keeps: clients, codes, tokens, device codes, its keys, and the
switches a test flips (rotate keys, sabotage the next ID token, slow a device poll down).

Authlib's mixins are implemented here exactly as any Authlib deployment would; nothing in this
module decides an OAuth or OIDC question (Authlib's grants do, in ``oidc_grants.py``).
"""

from __future__ import annotations

import enum
import secrets
import threading
import time
from typing import Any

import attrs
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from joserfc.jwk import ECKey, KeySet, RSAKey

CLIENT_ID = "flowengine-oidc"
#: 48 bytes: long enough for client_secret_jwt with HS256 (RFC 7518 §3.2 wants 32 or more).
CLIENT_SECRET = "oidc-secret:" + "s" * 36
PUBLIC_CLIENT_ID = "flowengine-device"
REDIRECT_URI = "http://127.0.0.1/flowengine/callback"
ALGORITHMS = ("RS256", "ES256", "PS256")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@attrs.frozen
class User:
    sub: str = "248289761001"
    name: str = "Alice Example"
    email: str = "alice@example.test"


USER = User()


class Sabotage(enum.Enum):
    """Ways to spoil the next ID token the provider issues (each must be refused)."""

    BAD_SIGNATURE = "bad_signature"  # signed by an impostor key under the real kid
    WRONG_AUDIENCE = "wrong_audience"
    EXPIRED = "expired"
    ALG_NONE = "alg_none"
    HS256_PUBLIC_KEY = "hs256_public_key"  # HMAC keyed with the provider's public RSA key (PEM)
    MISSING_NONCE = "missing_nonce"
    REPLAYED_NONCE = "replayed_nonce"  # the nonce of an earlier authorization
    WRONG_ISSUER = "wrong_issuer"
    UNKNOWN_KID = "unknown_kid"  # signed by a key the JWKS never shows
    ISSUED_IN_FUTURE = "issued_in_future"
    WRONG_AT_HASH = "wrong_at_hash"


@attrs.define
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]
    auth_methods: tuple[str, ...]
    grant_types: tuple[str, ...]
    scope: str = "openid profile email offline_access"
    client_metadata: dict[str, Any] = attrs.field(factory=dict)
    public_keys: KeySet | None = None  # private_key_jwt: the client's registered public keys

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def default_clients() -> dict[str, Client]:
    """A confidential client (every token endpoint method) and a public one (device grant, PKCE)."""
    grants = ("authorization_code", "refresh_token", DEVICE_GRANT)
    return {
        CLIENT_ID: Client(
            CLIENT_ID,
            CLIENT_SECRET,
            (REDIRECT_URI,),
            ("client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"),
            grants,
        ),
        PUBLIC_CLIENT_ID: Client(PUBLIC_CLIENT_ID, None, (REDIRECT_URI,), ("none",), grants),
    }


@attrs.define
class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    auth_time: float = attrs.field(factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_auth_time(self) -> int:
        return int(self.auth_time)

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@attrs.define
class Token(TokenMixin):  # type: ignore[misc]
    client: Client
    user: User
    access_token: str
    scope: str
    expires_in: int
    issued_at: float
    refresh_token: str | None = None
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        return self.client


@attrs.define
class Received:
    """One request to the token, device or userinfo endpoint, as the provider saw it."""

    path: str
    form: dict[str, str]
    auth: str  # basic, assertion, post, none, bearer
    status: int


class ProviderKeys:
    """The provider's signing keys: one RSA (RS256, PS256) and one EC P-256 (ES256) per generation."""

    def __init__(self) -> None:
        self.generation = 0
        self.current: list[RSAKey | ECKey] = []
        self.retired: list[RSAKey | ECKey] = []
        self.rotate(keep_old=False)

    def rotate(self, *, keep_old: bool) -> tuple[str, ...]:
        """New keys under new kids; the old ones stay published only with ``keep_old``."""
        self.generation += 1
        suffix = f"{self.generation}-{secrets.token_hex(4)}"
        self.retired = self.current if keep_old else []
        self.current = [
            RSAKey.generate_key(2048, {"kid": f"rsa-{suffix}", "use": "sig"}),
            ECKey.generate_key("P-256", {"kid": f"ec-{suffix}", "use": "sig"}),
        ]
        return tuple(str(key.kid) for key in self.current)

    def for_alg(self, alg: str) -> RSAKey | ECKey:
        wanted = ECKey if alg.startswith("ES") else RSAKey
        return next(key for key in self.current if isinstance(key, wanted))

    def private_set(self) -> KeySet:
        return KeySet(list(self.current))

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in (*self.current, *self.retired)]}


class ProviderState:
    """Everything the provider keeps, behind one lock (werkzeug serves each request on a thread)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.issuer = "http://127.0.0.1"
        self.keys = ProviderKeys()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.clients = default_clients()
            self.codes: dict[str, Code] = {}
            self.tokens: list[Token] = []
            self.received: list[Received] = []
            self.nonces: list[str] = []
            self.jtis: set[str] = set()
            self.devices: dict[str, dict[str, Any]] = {}
            self.device_grants: dict[str, tuple[User, bool]] = {}
            self.device_interval = 5
            self.device_expires_in = 600
            self.slow_downs = 0
            self.sabotages: list[Sabotage] = []
            self.id_token_alg = "RS256"
            self.issued_id_tokens: list[str] = []
            self.userinfo_sub: str | None = None
            self.discovery_overrides: dict[str, Any] = {}
            self.discovery_headers: dict[str, str] = {}
            self.jwks_headers: dict[str, str] = {}
            self.jwks_fetches = 0
            self.discovery_fetches = 0

    def take_sabotage(self) -> Sabotage | None:
        with self.lock:
            return self.sabotages.pop(0) if self.sabotages else None

    def by_access(self, value: str) -> Token | None:
        with self.lock:
            return next((t for t in self.tokens if secrets.compare_digest(t.access_token, value)), None)

    def by_refresh(self, value: str) -> Token | None:
        with self.lock:
            for token in self.tokens:
                if token.refresh_token is not None and secrets.compare_digest(token.refresh_token, value):
                    return token
        return None
