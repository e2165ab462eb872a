"""Authlib's grants, endpoints and OpenID extensions, given the storage every deployment writes.

The protocol decisions are Authlib's own: the code grant with PKCE (S256 required), OpenID
Connect's ID token (``OpenIDCode``), refresh, revocation, the device grant (RFC 8628), the
userinfo endpoint, and RFC 7523 client assertions (``client_secret_jwt``, ``private_key_jwt``).
The only additions are the test switches: a spoiled next ID token, a forced ``slow_down``.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidRequestError, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant, DeviceCredentialDict
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode, OpenIDToken, UserInfo, UserInfoEndpoint
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from tests.support import oidc_tokens
from tests.support.oidc_models import ALGORITHMS, Client, Code, ProviderState, Token, User

#: Every way a client may authenticate at the token endpoint; each client allows its own subset.
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"]


def _state(grant: Any) -> ProviderState:
    state: ProviderState = grant.server.provider_state
    return state


def user_info(user: User, scope: str, sub: str | None = None) -> UserInfo:
    return UserInfo(sub=sub or user.sub, name=user.name, email=user.email).filter(scope)


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        data, state = request.payload.data, _state(self)
        with state.lock:
            if data.get("nonce"):
                state.nonces.append(data["nonce"])
            state.codes[code] = Code(
                code=code,
                client_id=request.client.client_id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.payload.scope or "",
                user=request.user,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                nonce=data.get("nonce"),
            )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        with _state(self).lock:
            found = _state(self).codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        with _state(self).lock:
            _state(self).codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> User:
        return authorization_code.user


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = _state(self).by_refresh(refresh_token)
        return token if token is not None and not token.revoked else None

    def authenticate_user(self, refresh_token: Token) -> User:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        with _state(self).lock:
            refresh_token.revoked = True


class DeviceGrant(DeviceCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    def query_device_credential(self, device_code: str) -> DeviceCredentialDict | None:
        with _state(self).lock:
            found = _state(self).devices.get(device_code)
        return DeviceCredentialDict(found) if found is not None else None

    def query_user_grant(self, user_code: str) -> tuple[User, bool] | None:
        with _state(self).lock:
            return _state(self).device_grants.get(user_code)

    def should_slow_down(self, credential: DeviceCredentialDict) -> bool:
        state = _state(self)
        with state.lock:
            if state.slow_downs > 0:
                state.slow_downs -= 1
                return True
        return False

    def create_token_response(self) -> Any:
        answer = super().create_token_response()
        with _state(self).lock:  # a device code is spent once it has bought a token
            _state(self).devices.pop(self.request.payload.data.get("device_code"), None)
        return answer


class DeviceEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    # Authlib reads these two as attributes; here they follow the test's settings.
    @property
    def EXPIRES_IN(self) -> int:
        return _state(self).device_expires_in

    @property
    def INTERVAL(self) -> int:
        return _state(self).device_interval

    def get_verification_uri(self) -> str:
        return f"{_state(self).issuer}/device"

    def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
        with _state(self).lock:
            _state(self).devices[data["device_code"]] = {
                **data,
                "client_id": client_id,
                "scope": scope,
                "expires_at": time.time() + data["expires_in"],
            }


class _IdTokenSigning:
    """What ``OpenIDCode`` and ``OpenIDToken`` need from a deployment, plus the sabotage switch."""

    state: ProviderState

    def resolve_client_private_key(self, client: Client) -> KeySet:
        return self.state.keys.private_set()

    def get_client_algorithm(self, client: Client) -> str:
        return self.state.id_token_alg

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.state.issuer}

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return user_info(user, scope)

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        honest: str = super().encode_id_token(token, request)  # type: ignore[misc]
        sabotage = self.state.take_sabotage()
        if sabotage is None:
            issued = honest
        else:
            claims = json.loads(jws.extract_compact(honest.encode()).payload)
            spoiled = oidc_tokens.spoil(claims, sabotage, self.state)
            issued = oidc_tokens.sign(self.state, spoiled, self.state.id_token_alg, sabotage)
        with self.state.lock:
            self.state.issued_id_tokens.append(issued)
        return issued


class OpenIdCode(_IdTokenSigning, OpenIDCode):  # type: ignore[misc]
    def __init__(self, state: ProviderState) -> None:
        super().__init__(require_nonce=False)
        self.state = state

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        with self.state.lock:  # Authlib refuses an authorization request that reuses a nonce
            return nonce in self.state.nonces


class OpenIdDevice(_IdTokenSigning, OpenIDToken):  # type: ignore[misc]
    def __init__(self, state: ProviderState) -> None:
        self.state = state


class S256Only(CodeChallenge):  # type: ignore[misc]
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        if grant.request.payload.data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class Issuer(IssuerParameter):  # type: ignore[misc]
    def __init__(self, state: ProviderState) -> None:
        self.state = state

    def get_issuer(self) -> str:
        return self.state.issuer


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        state = _state(self)
        return state.by_access(token_string) or state.by_refresh(token_string)

    def revoke_token(self, token: Token, request: Any) -> None:
        with _state(self).lock:
            token.revoked = True


class Bearer(BearerTokenValidator):  # type: ignore[misc]
    def __init__(self, state: ProviderState) -> None:
        super().__init__()
        self.state = state

    def authenticate_token(self, token_string: str) -> Token | None:
        return self.state.by_access(token_string)


class Userinfo(UserInfoEndpoint):  # type: ignore[misc]
    def get_issuer(self) -> str:
        return _state(self).issuer

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return user_info(user, scope, _state(self).userinfo_sub)

    def resolve_private_key(self) -> KeySet:
        return _state(self).keys.private_set()

    def get_supported_algorithms(self) -> list[str]:
        return list(ALGORITHMS)


class Assertion(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication; one instance per method, each taking the assertions of its kind."""

    def __init__(self, method: str, state: ProviderState) -> None:
        super().__init__(leeway=60)
        self.CLIENT_AUTH_METHOD = method
        self.state = state

    def __call__(self, query_client: Any, request: Any) -> Client | None:
        assertion = request.form.get("client_assertion")
        if assertion:
            try:
                alg = str(jws.extract_compact(assertion.encode()).headers().get("alg", ""))
            except (JoseError, ValueError):
                alg = ""
            if alg.startswith("HS") != (self.CLIENT_AUTH_METHOD == "client_secret_jwt"):
                return None  # the other method's assertion
        client: Client | None = super().__call__(query_client, request)
        return client

    def get_audiences(self) -> list[str]:
        return [f"{self.state.issuer}/token"]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        with self.state.lock:
            if jti in self.state.jtis:
                return False
            self.state.jtis.add(jti)
            return True

    def resolve_client_public_key(self, client: Client) -> OctKey | KeySet:
        if self.CLIENT_AUTH_METHOD == "client_secret_jwt":
            return OctKey.import_key((client.client_secret or "").encode())
        if client.public_keys is None:
            raise InvalidRequestError("this client registered no public key")
        return client.public_keys
