"""The core's token requests: built from a spec for a client, authenticated, and read back (pure).

``TokenRequests`` is part of ``FlowCore``: the code exchange, refresh, grants, device polls
and revocation all build their request here, with the client's credentials as the spec
says (the secret in the body or in HTTP Basic, or a JWT the client signs: RFC 7523,
OpenID Connect Core §9), and read the answer into a ``Token``. A signed assertion's ``jti``
and time come from the caller, as every random value and every ``now`` does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from flowengine import _security
from flowengine._answer import answer_body
from flowengine._client import Client
from flowengine._client_auth import ClientKey, client_secret_jwt, private_key_jwt
from flowengine._endpoints import Endpoints
from flowengine._errors import ConfigError, DiscoveryError, ErrorCode
from flowengine._http import HttpRequest, HttpResponse
from flowengine._records import AccountRef, Token, evolve
from flowengine._spec import FlowSpec, TokenRequest
from flowengine._tokens import build_request, read_token_response

__all__ = ["TokenRequests"]

#: The ``client_auth`` values that sign a client assertion (RFC 7523, OpenID Connect Core §9).
_SIGNED = frozenset({"client_secret_jwt", "private_key_jwt"})


class TokenRequests:
    """Token-endpoint requests and answers of one spec, for one client (a part of ``FlowCore``)."""

    spec: FlowSpec
    client: Client
    urls: Endpoints
    user_agent: str
    #: The client's private key, for ``client_auth: private_key_jwt`` (loaded by the driver).
    client_key: ClientKey | None
    _spec_file: str | None

    @functools.cached_property
    def signs_assertions(self) -> bool:
        """True when some request of the spec authenticates with a signed client assertion.

        Only then does a request need a fresh ``jti`` (``assertion_id``): the driver draws
        none for the others.
        """
        spec = self.spec
        rules = [*spec.grants.values(), spec.revocation, spec.device]
        return any(rule is not None and rule.client_auth in _SIGNED for rule in rules)

    def endpoint_url(self, name: str, values: Mapping[str, str | None]) -> str:
        """The endpoint ``name`` filled from ``values``, judged (``connection_invalid``).

        An endpoint the spec leaves to discovery and the issuer's metadata does not name is
        ``discovery_endpoint_missing``: only the request that needs it fails.
        """
        if name not in self.urls.templates:
            raise DiscoveryError(
                f"the issuer's metadata names no {name!r} endpoint (write it in the spec's endpoints)",
                code="discovery_endpoint_missing",
            )
        return self.urls.url(name, values)

    def token_request(
        self,
        grant: str,
        values: Mapping[str, str | None],
        *,
        now: float | None = None,
        assertion_id: str | None = None,
    ) -> tuple[HttpRequest, tuple[str, ...]]:
        """A request of ``grant`` with the client's credentials, and the secret values it carries.

        ``now`` and ``assertion_id`` (a fresh ``jti``) sign the client assertion of a grant
        whose ``client_auth`` is ``client_secret_jwt`` or ``private_key_jwt``.
        """
        if grant not in self.spec.grants:
            raise ConfigError(
                f"spec {self.spec.name!r} has no {grant!r} grant", code=ErrorCode.GRANT_UNSUPPORTED
            )
        rule = self.spec.grants[grant]
        filled = self.client_values(values)
        url = self.endpoint_url(rule.endpoint, filled)
        return self.authenticated_request(rule, url, filled, now, assertion_id)

    def authenticated_request(
        self,
        rule: TokenRequest,
        url: str,
        values: Mapping[str, str | None],
        now: float | None,
        assertion_id: str | None,
    ) -> tuple[HttpRequest, tuple[str, ...]]:
        """A token-style request (token, revocation, device authorization) to ``url``, authenticated."""
        filled = self.client_values(values)
        assertion = self.client_assertion(rule, filled, now, assertion_id)
        request = build_request(rule, url, filled, self.user_agent, assertion=assertion)
        secrets = _security.sent_secrets({**filled, **(assertion or {})}, request)
        return request, tuple(sorted(secrets))

    def client_assertion(
        self,
        rule: TokenRequest,
        values: Mapping[str, str | None],
        now: float | None,
        assertion_id: str | None,
    ) -> dict[str, str] | None:
        """The ``client_assertion`` parameters a request of ``rule`` carries, or None (RFC 7523 §2.2).

        Its audience is the token endpoint (Core §9), for token, revocation and device requests alike.
        """
        if rule.client_auth not in _SIGNED:
            return None
        if now is None or not assertion_id:
            raise AssertionError("a signed client assertion needs now and a fresh jti")
        audience = self.assertion_audience(values)
        if rule.client_auth == "client_secret_jwt":
            return client_secret_jwt(
                client_id=self.client.client_id,
                client_secret=self.client.client_secret or "",
                token_endpoint=audience,
                now=now,
                jti=assertion_id,
            )
        if self.client_key is None:
            raise ConfigError(
                f"spec {self.spec.name!r} authenticates with private_key_jwt: give the client's "
                "private key (Client(private_key=...), or --private-key FILE)",
                code=ErrorCode.CLIENT_KEY_INVALID,
            )
        return private_key_jwt(
            client_id=self.client.client_id,
            key=self.client_key,
            token_endpoint=audience,
            now=now,
            jti=assertion_id,
        )

    def assertion_audience(self, values: Mapping[str, str | None]) -> str:
        """The token endpoint a client assertion is addressed to: the code grant's, else the first grant's."""
        grants = self.spec.grants
        grant = "authorization_code" if "authorization_code" in grants else next(iter(grants))
        return self.endpoint_url(grants[grant].endpoint, self.client_values(values))

    def grant_url(self, grant: str, values: Mapping[str, str | None]) -> str:
        """Where ``grant``'s requests go, for the connection and kept values in ``values``."""
        return self.endpoint_url(self.spec.grants[grant].endpoint, self.client_values(values))

    def check_token_endpoint(self, token: Token) -> None:
        """Refuse to send ``token``'s secrets to a token endpoint other than the one that issued it.

        A token obtained from one server (a sandbox, staging, another tenant) and
        refreshed against another would hand its refresh token to a stranger, and the
        stranger's ``invalid_grant`` would mark a healthy grant dead.
        """
        issuer = token.token_endpoint
        if issuer is None:
            return
        values = {**token.connection, **token.kept}
        grants = self.spec.grants
        if "refresh_token" in grants and issuer == self.grant_url("refresh_token", values):
            return  # the usual case, found without filling every grant's URL
        ours = {self.grant_url(grant, values) for grant in grants}
        if issuer not in ours:
            here = sorted(ours)[0]
            raise ConfigError(
                f"{token.key} was issued by the token endpoint at {_origin(issuer)}; "
                f"this engine's is {_origin(here)} (a sandbox's token refreshed without --sandbox, "
                "or the other way round?)",
                code=ErrorCode.TOKEN_ENDPOINT_MISMATCH,
            )

    def client_values(self, values: Mapping[str, str | None]) -> dict[str, str | None]:
        """Template values with the client's id, secret and registered redirect URI added."""
        client = self.client
        return {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "redirect_uri": client.redirect_uri,
            **values,
        }

    def read_token(
        self,
        response: HttpResponse,
        now: float,
        *,
        grant: str,
        sent: tuple[str, ...] = (),
        default_account: AccountRef | None = None,
        connection: Mapping[str, str] | None = None,
        kept: Mapping[str, str] | None = None,
        requested_scope: str | None = None,
        refreshing: Token | None = None,
        keep_id_token: bool = False,
    ) -> Token:
        """A token from a token endpoint's answer, or the ``ProviderError`` it amounts to.

        The token keeps the connection and kept values it was obtained with (refresh and
        revoke go to that tenant) and the file of its spec. An answer that names no
        scope granted ``requested_scope`` (RFC 6749 §5.1; a refresh, §6: the same as before).
        ``refreshing``: the token a refresh replaces; the new one is its account's, whatever
        the answer says or leaves out, keeps its claims (those of its login), and keeps its
        refresh token when the answer brings none (RFC 6749 §6).
        ``sent``: the secrets the request carried, scrubbed from whatever the answer echoes
        back (SECURITY.md 28). The token remembers the token endpoint that issued it. An
        OpenID spec's raw ``id_token`` is never kept in ``extra``; ``keep_id_token`` leaves
        it there for the core to validate (and then remove).
        """
        values = {**(connection or {}), **(kept or {})}
        token = read_token_response(
            self.spec,
            response,
            client_id=self.client.client_id,
            now=now,
            sent=sent,
            default_account=refreshing.account if refreshing is not None else default_account,
            requested_scope=requested_scope,
            account_required=refreshing is None,
            old_refresh_token=refreshing.refresh_token if refreshing is not None else None,
            fields={
                "connection": dict(connection or {}),
                "kept": dict(kept or {}),
                "spec_source": self._spec_file,
                "token_endpoint": self.grant_url(grant, values),
                "claims": refreshing.claims if refreshing is not None else {},
            },
        )
        if self.spec.openid is None:
            return token
        extra = {name: value for name, value in token.extra.items() if name != "id_token"}
        if keep_id_token:
            # Read from the answer itself: ``extra`` was scrubbed of the request's secrets, and a
            # JWT's base64 may happen to begin like one (the client id in HTTP Basic's).
            body = answer_body(response.body, response.content_type)
            if isinstance(body, dict) and "id_token" in body:
                extra["id_token"] = body["id_token"]
        return evolve(token, extra=extra)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: enough to tell servers apart, without its path."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
