"""An authorization server nobody on this project wrote: Authlib's, on Flask, served on loopback.

The OAuth logic (the code grant, PKCE, refresh-token rotation, RFC 7009 revocation, RFC 9207
``iss``) is Authlib's own; this module only gives it what every Authlib deployment writes
itself: storage for clients, codes and tokens (dicts here), a user, and a consent page. It
also keeps a record of the token and revocation requests it received, so a test can prove
what was (or was not) sent, and can fail the next requests of a path on demand.

``specs/examples/authlib.yaml`` describes this server to flowengine, with no Python.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import attrs
import httpx
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidRequestError,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from tests.support.tls import tls

ISSUER = "https://authlib.flowengine.test"
CLIENT_ID = "flowengine-peer"
#: RFC 6749 §2.3.1 encodes both halves of HTTP Basic: this secret needs it (':' '/' '%' '+').
CLIENT_SECRET = "s3cr:et/with%chars+" + "x" * 24
REDIRECT_URI = "http://127.0.0.1/flowengine/callback"
USER = "alice"


@attrs.define
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    scope: str = "profile email"

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
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@attrs.define
class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: float = attrs.field(factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_auth_time(self) -> int:
        return int(self.auth_time)

    def get_nonce(self) -> None:
        return None

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@attrs.define
class Token(TokenMixin):  # type: ignore[misc]
    client_id: str
    user: str
    access_token: str
    token_type: str
    scope: str
    expires_in: int
    issued_at: float
    refresh_token: str | None = None
    access_revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Client:
        return PEER.clients[self.client_id]


@attrs.define
class Received:
    """One request to the token or revocation endpoint, as the peer saw it."""

    path: str
    form: dict[str, str]
    basic: bool
    status: int


@attrs.define
class Failure:
    """The next ``times`` requests of ``path`` are answered ``status`` (with ``Retry-After``)."""

    path: str
    status: int
    times: int
    retry_after: int | None = None


class PeerState:
    """Everything the peer keeps; one lock, since werkzeug serves each request on a thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients = {CLIENT_ID: Client(CLIENT_ID, CLIENT_SECRET, (REDIRECT_URI,))}
        self.codes: dict[str, Code] = {}
        self.tokens: list[Token] = []
        self.received: list[Received] = []
        self.failures: list[Failure] = []

    def reset(self) -> None:
        with self.lock:
            self.codes.clear()
            self.tokens.clear()
            self.received.clear()
            self.failures.clear()

    def by_access(self, value: str) -> Token | None:
        return next((t for t in self.tokens if secrets.compare_digest(t.access_token, value)), None)

    def by_refresh(self, value: str) -> Token | None:
        return next(
            (t for t in self.tokens if t.refresh_token and secrets.compare_digest(t.refresh_token, value)),
            None,
        )


PEER = PeerState()


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        with PEER.lock:
            PEER.codes[code] = Code(
                code=code,
                client_id=request.client.client_id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.payload.scope or "",
                user=request.user,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
            )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        with PEER.lock:
            found = PEER.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        with PEER.lock:
            PEER.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> str:
        return authorization_code.user


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        with PEER.lock:
            token = PEER.by_refresh(refresh_token)
        return token if token is not None and not token.refresh_revoked else None

    def authenticate_user(self, refresh_token: Token) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        with PEER.lock:
            refresh_token.refresh_revoked = True


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        with PEER.lock:
            if token_type_hint == "access_token":
                return PEER.by_access(token_string)
            if token_type_hint == "refresh_token":
                return PEER.by_refresh(token_string)
            return PEER.by_access(token_string) or PEER.by_refresh(token_string)

    def revoke_token(self, token: Token, request: Any) -> None:
        hint = request.form.get("token_type_hint")
        with PEER.lock:
            token.access_revoked = True
            if hint != "access_token":  # RFC 7009 §2.1: a refresh token takes its access tokens along
                token.refresh_revoked = True


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 required of every client; ``plain`` is not offered."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        if not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge'")
        if grant.request.payload.data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class Issuer(IssuerParameter):  # type: ignore[misc]
    def get_issuer(self) -> str:
        return ISSUER


def _save_token(token: dict[str, Any], request: Any) -> None:
    with PEER.lock:
        PEER.tokens.append(
            Token(
                client_id=request.client.client_id,
                user=request.user,
                access_token=token["access_token"],
                token_type=token["token_type"],
                scope=token.get("scope", ""),
                expires_in=token["expires_in"],
                issued_at=time.time(),
                refresh_token=token.get("refresh_token"),
            )
        )


def create_app() -> Flask:
    """The Flask app: Authlib's server behind /oauth/authorize, /oauth/token, /oauth/revoke."""
    app = Flask("authlib-peer")
    app.config.update(
        OAUTH2_REFRESH_TOKEN_GENERATOR=True,
        OAUTH2_TOKEN_EXPIRES_IN={"authorization_code": 3600, "refresh_token": 3600},
    )
    server = AuthorizationServer(app, query_client=PEER.clients.get, save_token=_save_token)
    server.register_grant(CodeGrant, [S256Only(required=True)])
    server.register_grant(RefreshGrant)
    server.register_endpoint(Revocation)
    server.register_extension(Issuer())

    @app.before_request
    def fail_on_demand() -> Response | None:
        with PEER.lock:
            failure = next((f for f in PEER.failures if f.path == request.path and f.times > 0), None)
            if failure is not None:
                failure.times -= 1
        if failure is None:
            return None
        response = jsonify(error="temporarily_unavailable")
        response.status_code = failure.status
        if failure.retry_after is not None:
            response.headers["Retry-After"] = str(failure.retry_after)
        _record(response.status_code)
        return response

    @app.get("/oauth/authorize")
    def consent_page() -> Response | str:
        try:
            grant = server.get_consent_grant(end_user=USER)
        except Exception as error:  # Authlib's OAuth2Error: shown, never redirected unverified
            return server.handle_error_response(request, error)  # type: ignore[no-any-return]
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in request.args.items()
        )
        return (
            f"<form method=post><p>{html.escape(grant.client.client_id)} asks for "
            f"{html.escape(grant.request.payload.scope or '')}</p>{fields}"
            "<button name=confirm value=yes>Allow</button><button name=confirm value=no>Deny</button></form>"
        )

    @app.post("/oauth/authorize")
    def consent_answer() -> Response:
        approved = request.form.get("confirm") == "yes"
        grant = server.get_consent_grant(end_user=USER)  # the request validated again, from the form
        return server.create_authorization_response(grant_user=USER if approved else None, grant=grant)  # type: ignore[no-any-return]

    @app.post("/oauth/token")
    def token() -> Response:
        response: Response = server.create_token_response()
        _record(response.status_code)
        return response

    @app.post("/oauth/revoke")
    def revoke() -> Response:
        response: Response = server.create_endpoint_response("revocation")
        _record(response.status_code)
        return response

    @app.get("/api/me")
    def me() -> tuple[Response, int]:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        with PEER.lock:
            token = PEER.by_access(value) if scheme.lower() == "bearer" else None
        if token is None or token.is_revoked() or token.is_expired():
            return jsonify(error="invalid_token"), 401
        return jsonify(sub=token.user, scope=token.scope), 200

    return app


def _record(status: int) -> None:
    with PEER.lock:
        PEER.received.append(
            Received(request.path, dict(request.form), request.authorization is not None, status)
        )


@attrs.define
class PeerServer:
    """The peer on a loopback port, in a thread; ``url`` once started."""

    url: str
    state: PeerState = PEER

    @property
    def endpoints(self) -> dict[str, str]:
        """The overrides that point ``specs/examples/authlib.yaml`` at this server."""
        return {
            "authorize": f"{self.url}/oauth/authorize",
            "token": f"{self.url}/oauth/token",
            "revoke": f"{self.url}/oauth/revoke",
        }

    def received(self, path: str | None = None) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if path is None or r.path == path]

    def fail_next(self, path: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        with self.state.lock:
            self.state.failures.append(Failure(path, status, times, retry_after))

    async def consent(self, authorization_url: str | None, *, approve: bool = True) -> str:
        """Play the person: open the consent page, answer it, return where the browser is sent."""
        assert authorization_url is not None
        query = dict(parse_qsl(urlsplit(authorization_url).query, keep_blank_values=True))
        async with httpx.AsyncClient(trust_env=False, verify=tls()) as browser:
            page = await browser.get(authorization_url)
            assert page.status_code == 200, page.text
            answer = await browser.post(
                f"{self.url}/oauth/authorize", data={**query, "confirm": "yes" if approve else "no"}
            )
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]


def serve() -> Iterator[PeerServer]:
    """Serve the peer on 127.0.0.1 (a free port) until the generator is closed."""
    http = make_server("127.0.0.1", 0, create_app(), threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="authlib-peer", daemon=True)
    thread.start()
    try:
        yield PeerServer(f"http://127.0.0.1:{http.server_port}")
    finally:
        http.shutdown()
        thread.join(10)
        http.server_close()
