"""An OpenID Connect provider nobody on this project wrote: Authlib's server side, on Flask, on loopback.

Authlib decides every protocol question (``authlib.oauth2.rfc6749`` grants, ``authlib.oidc.core``
ID tokens and userinfo, ``rfc8628`` device grant, ``rfc7523`` client assertions, ``rfc7009``
revocation, ``rfc9207`` ``iss``); this module serves it with a discovery document and a JWKS
(RS256 and ES256 keys, PS256 on the RSA key), and gives tests the switches they need:

- ``rotate_keys()``: new signing keys under new kids, mid-run;
- ``sabotage_next(Sabotage.X)``: the next ID token is spoiled (bad signature, wrong ``aud``,
  expired, ``alg: none``, HS256 keyed with the public key, missing or replayed nonce...);
- ``mint_id_token(...)``: a token signed (or forged) by the provider's keys, without a flow;
- the device grant: ``decide_device`` approves or denies, ``expire_device``, ``slow_down_next``;
- ``discovery``/``jwks_headers``: overrides of the discovery document and caching headers.

It keeps a record of the requests it received (``received``), so a test can prove what was sent.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
import httpx
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oidc.discovery import OpenIDProviderMetadata
from flask import Flask, Response, jsonify, request
from joserfc.jwk import KeySet
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.support import oidc_grants as g
from tests.support import oidc_tokens
from tests.support.oidc_models import (
    ALGORITHMS,
    CLIENT_ID,
    CLIENT_SECRET,
    DEVICE_GRANT,
    PUBLIC_CLIENT_ID,
    REDIRECT_URI,
    USER,
    ProviderState,
    Received,
    Sabotage,
    Token,
)
from tests.support.tls import tls

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "DEVICE_GRANT",
    "PUBLIC_CLIENT_ID",
    "REDIRECT_URI",
    "USER",
    "Grant",
    "OidcProvider",
    "Sabotage",
    "serve",
]


def discovery_document(state: ProviderState) -> dict[str, Any]:
    """The provider's metadata, validated by Authlib's own ``OpenIDProviderMetadata``."""
    iss = state.issuer
    document: dict[str, Any] = {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/token",
        "userinfo_endpoint": f"{iss}/userinfo",
        "jwks_uri": f"{iss}/jwks",
        "revocation_endpoint": f"{iss}/revoke",
        "device_authorization_endpoint": f"{iss}/device_authorization",
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "userinfo_signing_alg_values_supported": list(ALGORITHMS),
        "token_endpoint_auth_methods_supported": g.AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["HS256", "RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "email"],
        "authorization_response_iss_parameter_supported": True,
    }
    OpenIDProviderMetadata(document).validate()
    with state.lock:
        for name, value in state.discovery_overrides.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
    return document


def _save_token(state: ProviderState) -> Any:
    def save(token: dict[str, Any], req: Any) -> None:
        with state.lock:
            state.tokens.append(
                Token(
                    client=req.client,
                    user=req.user,
                    access_token=token["access_token"],
                    scope=token.get("scope", ""),
                    expires_in=token["expires_in"],
                    issued_at=time.time(),
                    refresh_token=token.get("refresh_token"),
                )
            )

    return save


def authorization_server(app: Flask, state: ProviderState) -> AuthorizationServer:
    """Authlib's server with every grant, extension and endpoint the provider offers."""

    def query_client(client_id: str) -> Any:
        return state.clients.get(client_id)  # looked up each time: reset() replaces the clients

    server = AuthorizationServer(app, query_client=query_client, save_token=_save_token(state))
    server.provider_state = state
    server.register_grant(g.CodeGrant, [g.S256Only(required=True), g.OpenIdCode(state)])
    server.register_grant(g.RefreshGrant)
    server.register_grant(g.DeviceGrant, [g.OpenIdDevice(state)])
    server.register_endpoint(g.DeviceEndpoint)
    server.register_endpoint(g.Revocation)
    protector = ResourceProtector()
    protector.register_token_validator(g.Bearer(state))
    server.register_endpoint(g.Userinfo(resource_protector=protector))
    server.register_extension(g.Issuer(state))
    for method in ("client_secret_jwt", "private_key_jwt"):
        server.register_client_auth_method(method, g.Assertion(method, state))
    return server


def _auth_kind() -> str:
    if request.authorization is not None:
        return "basic"
    if request.form.get("client_assertion"):
        return "assertion"
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return "bearer"
    return "post" if request.form.get("client_secret") else "none"


def _record(state: ProviderState, response: Response) -> Response:
    with state.lock:
        state.received.append(Received(request.path, dict(request.form), _auth_kind(), response.status_code))
    return response


def _with_headers(response: Response, headers: dict[str, str]) -> Response:
    for name, value in headers.items():
        response.headers[name] = value
    return response


def _metadata_routes(app: Flask, state: ProviderState) -> None:
    def metadata() -> Response:
        with state.lock:
            state.discovery_fetches += 1
            headers = dict(state.discovery_headers)
        return _with_headers(jsonify(discovery_document(state)), headers)

    app.add_url_rule("/.well-known/openid-configuration", "openid_configuration", metadata)
    app.add_url_rule("/.well-known/oauth-authorization-server", "oauth_metadata", metadata)

    @app.get("/jwks")
    def jwks() -> Response:
        with state.lock:
            state.jwks_fetches += 1
            body, headers = state.keys.public_jwks(), dict(state.jwks_headers)
        return _with_headers(jsonify(body), headers)


def _consent_routes(app: Flask, state: ProviderState, server: AuthorizationServer) -> None:
    @app.get("/authorize")
    def consent_page() -> Response | str:
        try:
            server.get_consent_grant(end_user=USER)  # validates the request before any page is shown
        except Exception as error:  # Authlib's OAuth2Error: shown, never redirected unverified
            return server.handle_error_response(request, error)  # type: ignore[no-any-return]
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in request.args.items()
        )
        # The parameters ride in the form: posted to the bare path, as a browser would send them once.
        allow = "<button name=confirm value=yes>Allow</button>"
        return f"<form method=post action=/authorize>{fields}{allow}</form>"

    @app.post("/authorize")
    def consent_answer() -> Response:
        grant = server.get_consent_grant(end_user=USER)
        user = USER if request.form.get("confirm") == "yes" else None
        return server.create_authorization_response(grant_user=user, grant=grant)  # type: ignore[no-any-return]

    @app.route("/device", methods=["GET", "POST"])
    def verification_page() -> tuple[str, int]:
        user_code = request.values.get("user_code", "")
        if request.method == "GET":
            return f"<form method=post><input name=user_code value='{html.escape(user_code)}'></form>", 200
        with state.lock:
            known = any(d["user_code"] == user_code for d in state.devices.values())
            if known:
                state.device_grants[user_code] = (USER, request.form.get("confirm") == "yes")
        return ("done", 200) if known else ("unknown code", 404)


def _protocol_routes(app: Flask, state: ProviderState, server: AuthorizationServer) -> None:
    @app.post("/token")
    def token() -> Response:
        return _record(state, server.create_token_response())

    @app.post("/device_authorization")
    def device_authorization() -> Response:
        return _record(state, server.create_endpoint_response("device_authorization"))

    @app.route("/userinfo", methods=["GET", "POST"])
    def userinfo() -> Response:
        return _record(state, server.create_endpoint_response("userinfo"))

    @app.post("/revoke")
    def revoke() -> Response:
        return _record(state, server.create_endpoint_response("revocation"))


def create_app(state: ProviderState) -> Flask:
    """The Flask app serving ``state``'s provider."""
    app = Flask("oidc-provider")
    app.config.update(OAUTH2_REFRESH_TOKEN_GENERATOR=True)
    server = authorization_server(app, state)
    _metadata_routes(app, state)
    _consent_routes(app, state, server)
    _protocol_routes(app, state, server)
    return app


@attrs.frozen
class Grant:
    """An authorization code and the PKCE verifier that redeems it."""

    code: str = attrs.field(repr=False)
    verifier: str = attrs.field(repr=False)

    def token_form(self) -> dict[str, str]:
        """The form of the token request that redeems this code (client authentication aside)."""
        return {
            "grant_type": "authorization_code",
            "code": self.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": self.verifier,
        }


@attrs.define
class OidcProvider:
    """The running provider: its issuer URL and the switches tests flip."""

    state: ProviderState

    @property
    def issuer(self) -> str:
        return self.state.issuer

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    def reset(self) -> None:
        """Forget every client change, code, token, record and switch (the keys stay)."""
        self.state.reset()

    def rotate_keys(self, *, keep_old: bool = False) -> tuple[str, ...]:
        """New signing keys with new kids; the old ones leave the JWKS unless ``keep_old``."""
        with self.state.lock:
            return self.state.keys.rotate(keep_old=keep_old)

    def sabotage_next(self, sabotage: Sabotage, times: int = 1) -> None:
        """Spoil the next ``times`` ID tokens the token endpoint issues."""
        with self.state.lock:
            self.state.sabotages.extend([sabotage] * times)

    def sign_with(self, alg: str) -> None:
        """Sign ID tokens (and signed userinfo) with ``alg`` from now on (RS256, ES256, PS256)."""
        with self.state.lock:
            self.state.id_token_alg = alg

    def mint_id_token(
        self,
        *,
        nonce: str | None = None,
        sabotage: Sabotage | None = None,
        alg: str = "RS256",
        access_token: str | None = None,
        now: float | None = None,
        **claims: Any,
    ) -> str:
        """An ID token made with the provider's keys, without a flow, issued at ``now`` (default: the
        clock); ``claims`` override the honest ones."""
        honest = oidc_tokens.honest_claims(self.state, nonce=nonce, now=now)
        if access_token is not None:
            honest["at_hash"] = oidc_tokens.at_hash(access_token, alg)
        honest.update(claims)
        return oidc_tokens.sign(self.state, oidc_tokens.spoil(honest, sabotage, self.state), alg, sabotage)

    def public_jwks(self) -> dict[str, Any]:
        with self.state.lock:
            return self.state.keys.public_jwks()

    def register_client_key(self, public_jwk: dict[str, Any], client_id: str = CLIENT_ID) -> None:
        """Register the public half of a client's key, for ``private_key_jwt``."""
        with self.state.lock:
            self.state.clients[client_id].public_keys = KeySet.import_key_set({"keys": [public_jwk]})

    def only_auth_methods(self, *methods: str, client_id: str = CLIENT_ID) -> None:
        """Let ``client_id`` authenticate at the token endpoint only by ``methods``."""
        with self.state.lock:
            self.state.clients[client_id].auth_methods = methods

    def sign_userinfo(self, alg: str | None, client_id: str = CLIENT_ID) -> None:
        """Answer userinfo as a JWT signed with ``alg`` (None: plain JSON)."""
        with self.state.lock:
            metadata = self.state.clients[client_id].client_metadata
            if alg is None:
                metadata.pop("userinfo_signed_response_alg", None)
            else:
                metadata["userinfo_signed_response_alg"] = alg

    def userinfo_sub(self, sub: str | None) -> None:
        """Make userinfo claim another ``sub`` than the ID token's (None: the true one)."""
        with self.state.lock:
            self.state.userinfo_sub = sub

    def discovery(self, headers: dict[str, str] | None = None, **overrides: Any) -> None:
        """Change the discovery document (a None value removes the field) and its headers."""
        with self.state.lock:
            self.state.discovery_overrides.update(overrides)
            if headers is not None:
                self.state.discovery_headers = dict(headers)

    def jwks_headers(self, headers: dict[str, str]) -> None:
        """The headers the JWKS endpoint answers with (``Cache-Control``, ``Expires``...)."""
        with self.state.lock:
            self.state.jwks_headers = dict(headers)

    @property
    def jwks_fetches(self) -> int:
        with self.state.lock:
            return self.state.jwks_fetches

    def device_settings(self, *, interval: int | None = None, expires_in: int | None = None) -> None:
        """What the next device authorization answers say (``interval``, ``expires_in``)."""
        with self.state.lock:
            if interval is not None:
                self.state.device_interval = interval
            if expires_in is not None:
                self.state.device_expires_in = expires_in

    def slow_down_next(self, times: int = 1) -> None:
        """Answer the next ``times`` pending device polls ``slow_down`` (not ``authorization_pending``)."""
        with self.state.lock:
            self.state.slow_downs += times

    def expire_device(self, user_code: str) -> None:
        """Let the device code behind ``user_code`` expire now (the next poll: ``expired_token``)."""
        with self.state.lock:
            for device in self.state.devices.values():
                if device["user_code"] == user_code:
                    device["expires_at"] = 0

    def decide_device(self, user_code: str, *, approve: bool = True) -> None:
        """Play the person at the verification page: approve or deny ``user_code``."""
        with httpx.Client(trust_env=False, verify=tls()) as browser:
            answer = browser.post(
                f"{self.issuer}/device", data={"user_code": user_code, "confirm": "yes" if approve else "no"}
            )
        assert answer.status_code == 200, answer.text

    def consent(self, authorization_url: str, *, approve: bool = True) -> str:
        """Play the person at the consent page; returns where the browser is sent back to."""
        query = dict(parse_qsl(urlsplit(authorization_url).query, keep_blank_values=True))
        with httpx.Client(trust_env=False, verify=tls()) as browser:
            page = browser.get(authorization_url)
            assert page.status_code == 200, page.text
            answer = browser.post(
                f"{self.issuer}/authorize", data={**query, "confirm": "yes" if approve else "no"}
            )
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]

    def authorize(
        self, *, nonce: str | None, scope: str = "openid profile email", client_id: str = CLIENT_ID
    ) -> Grant:
        """Run the browser half of a code flow (PKCE S256, ``nonce``): the code and its verifier."""
        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if nonce is not None:
            query["nonce"] = nonce
        back = self.consent(f"{self.issuer}/authorize?{urlencode(query)}")
        code = dict(parse_qsl(urlsplit(back).query))["code"]
        return Grant(code, verifier)

    def received(self, path: str | None = None) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if path is None or r.path == path]

    @property
    def issued_id_tokens(self) -> list[str]:
        with self.state.lock:
            return list(self.state.issued_id_tokens)


class _Quiet(WSGIRequestHandler):
    """No access log: request lines carry codes and states (SECURITY.md 14's rule, kept here too)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def serve(state: ProviderState | None = None) -> Iterator[OidcProvider]:
    """Serve a provider on 127.0.0.1 (a free port) until the generator is closed.

    The issuer is the loopback URL itself, so discovery's "issuer equals the URL asked" holds.
    """
    state = state or ProviderState()
    http = make_server("127.0.0.1", 0, create_app(state), threaded=True, request_handler=_Quiet)
    state.issuer = f"http://127.0.0.1:{http.server_port}"
    thread = threading.Thread(target=http.serve_forever, name="oidc-provider", daemon=True)
    thread.start()
    try:
        yield OidcProvider(state)
    finally:
        http.shutdown()
        thread.join(10)
        http.server_close()
