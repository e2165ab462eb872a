"""The flow spec: an attrs model of one provider's flow.

The model only: ``_spec_load`` reads it from YAML (structure), ``_spec_check``
judges what it means, ``_presets`` supplies the machines a spec need not write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

from flowengine._records import Outcome

__all__ = [
    "BUILTIN_VARIABLES",
    "DEFAULT_KEPT_PATTERN",
    "DISCOVERED_ENDPOINTS",
    "AccountRule",
    "AuthorizationRequest",
    "CallbackRules",
    "ClientAuth",
    "ConnectionVariable",
    "DeviceRequest",
    "FlowSpec",
    "KeptParameter",
    "MachineSpec",
    "OpenIdRules",
    "RedirectRules",
    "TokenRequest",
    "TokenResponseRules",
    "TransitionSpec",
    "UsageRules",
]

#: Variables every template may name; a spec adds its own through ``inputs``.
BUILTIN_VARIABLES = frozenset(
    {
        "client_id",
        "client_secret",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "code_verifier",
        "code",
        "refresh_token",
        "token",
        "token_type_hint",
        "nonce",
        "device_code",
    }
)

#: Endpoint names a spec with ``discovery`` may use without writing them, and the field of the
#: discovery document each is taken from (OpenID Connect Discovery §3, RFC 8414 §2).
DISCOVERED_ENDPOINTS: Mapping[str, str] = {
    "authorize": "authorization_endpoint",
    "token": "token_endpoint",
    "userinfo": "userinfo_endpoint",
    "revoke": "revocation_endpoint",
    "jwks": "jwks_uri",
    "device": "device_authorization_endpoint",
}

#: How a client authenticates a token-style request: its secret in the body or in HTTP Basic,
#: or a JWT it signs with its secret (HMAC) or its private key (RFC 7523 §2.2, OIDC Core §9).
ClientAuth = Literal["body", "basic", "client_secret_jwt", "private_key_jwt"]

#: What a kept callback parameter must look like when its spec gives no pattern: URL-safe
#: characters only, so that it can never change the shape of a URL it is put in.
DEFAULT_KEPT_PATTERN = r"[A-Za-z0-9._~-]{1,256}"


@attrs.frozen
class ConnectionVariable:
    """A value given per connection (a tenant's subdomain, a region), and the pattern it must match.

    The pattern is matched against the whole value; when it has a group, the value
    used is what its first group matched (``https://([a-z0-9-]+)\\.zendesk\\.com`` takes
    ``acme`` from a pasted URL). ``description`` is shown in prompts and docs.
    """

    pattern: str
    description: str = ""
    example: str | None = None
    default: str | None = None
    #: ``false``: the flow may start without it (parameters naming it are then left out).
    required: bool = True


@attrs.frozen
class KeptParameter:
    """A callback parameter kept on the flow and its token (QuickBooks' ``realmId``).

    ``param`` is the callback's parameter name when it is not the variable's own
    (Zoho's ``accounts-server``); ``pattern`` is matched as for a connection variable
    and is what makes a value from a callback safe to put in a URL.
    """

    param: str | None = None
    pattern: str = DEFAULT_KEPT_PATTERN
    description: str = ""
    example: str | None = None
    default: str | None = None


@attrs.frozen
class AuthorizationRequest:
    """Where the person is sent, and with which query parameters."""

    params: Mapping[str, str]
    endpoint: str = "authorize"
    scope_separator: str = " "
    #: Scopes asked for when ``start()`` is given none.
    default_scopes: tuple[str, ...] = ()
    #: ``fragment``: the parameters go after the endpoint's ``#`` (Apollo's single-page app).
    params_in: Literal["query", "fragment"] = "query"
    #: Parameters whose ``: / , @`` ... are sent as they are, for providers that refuse them escaped.
    unescaped: tuple[str, ...] = ()


@attrs.frozen
class TokenRequest:
    """How one grant asks the token endpoint for a token."""

    params: Mapping[str, str]
    endpoint: str = "token"
    #: ``query`` puts the parameters in the URL's query and sends no body.
    encoding: Literal["json", "form", "query"] = "form"
    client_auth: ClientAuth = "body"
    #: GitHub revokes with ``DELETE``; everything else is a POST.
    method: Literal["POST", "GET", "DELETE"] = "POST"
    #: Extra headers, as templates (Dropbox revokes with ``Authorization: Bearer {token}``).
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class DeviceRequest(TokenRequest):
    """The device authorization request (RFC 8628 §3.1), and the grant its polls send (§3.4)."""

    endpoint: str = "device"
    #: The grant (under ``grants:``) whose request a poll sends; its params carry ``{device_code}``.
    grant: str = "device_code"


@attrs.frozen
class OpenIdRules:
    """OpenID Connect on a spec's flows: a nonce per flow, and the ID token validated (Core §3.1.3.7).

    ``jwks`` and ``userinfo`` name endpoints (written, or discovered). ``algorithms`` is the
    allow-list (empty: RS256, ES256 and PS256, narrowed to what discovery says the issuer
    signs with). ``issuer_claims`` fills variables of the spec's issuer template from the
    token's own claims (Microsoft's multi-tenant ``{tenant}`` from ``tid``), but only when
    the flow's value of the variable is one of its ``multi_tenant`` values (``common``) or
    it has none: a configured tenant is never replaced by a token's claim.
    """

    jwks: str = "jwks"
    algorithms: tuple[str, ...] = ()
    leeway: int = 60
    max_age: int | None = None
    userinfo: str | None = None
    issuer_claims: Mapping[str, str] = attrs.field(factory=dict)
    #: Per ``issuer_claims`` variable, the values that name no one tenant (``common``).
    multi_tenant: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    trusted_audiences: tuple[str, ...] = ()


@attrs.frozen
class CallbackRules:
    """Which query parameters of the callback carry what."""

    code: str = "code"
    state: str = "state"
    error: str = "error"
    error_reason: str | None = None
    error_description: str = "error_description"
    iss: str | None = None
    iss_required: bool = False
    repeated: Literal["last", "reject"] = "reject"
    denied_errors: tuple[str, ...] = ("access_denied",)
    #: Callback parameters kept on the flow and its token, by variable name.
    keep: Mapping[str, KeptParameter] = attrs.field(factory=dict)


@attrs.frozen
class AccountRule:
    """Where the account a token acts for is named (dotted paths, e.g. ``ref.id``).

    In the token answer; or, with ``userinfo`` (an endpoint's name), in the JSON that
    endpoint answers to a GET with the new token (GitHub's ``/user``, ``id``).
    """

    id: str
    type: str | None = None
    default_type: str = "account"
    userinfo: str | None = None


@attrs.frozen
class TokenResponseRules:
    """How a token response is read; every field is a dotted path (``authed_user.access_token``)."""

    access_token: str = "access_token"
    token_type: str = "token_type"
    token_types: tuple[str, ...] = ("bearer",)
    #: The token type when the answer has none (Shopify, Figma); None: the answer must say.
    default_token_type: str | None = None
    expires_in: str = "expires_in"
    expires_in_unit: Literal["seconds", "milliseconds"] = "seconds"
    #: Where an absolute expiry is (epoch seconds, or an ISO 8601 time); preferred to expires_in.
    expires_at: str | None = None
    refresh_token: str = "refresh_token"
    scope: str = "scope"
    default_scope: str | None = None
    account: AccountRule | None = None
    leeway: int = 60
    rate_limit_status: tuple[int, ...] = (429,)


@attrs.frozen
class UsageRules:
    """How the token is used against the provider's API."""

    header_scheme: str = "Bearer"


@attrs.frozen
class RedirectRules:
    """Rules on the redirect URI; ``registered_domain`` is checked before any redirect."""

    registered_domain: str | None = None


@attrs.frozen
class TransitionSpec:
    """One edge of the machine: ``trigger`` moves ``source`` to ``dest``."""

    trigger: str
    source: tuple[str, ...]
    dest: str
    when: tuple[str, ...] = ()
    do: tuple[str, ...] = ()


@attrs.frozen
class MachineSpec:
    """The state machine of a flow: written out, or a ``preset`` with only its ``ttl`` set.

    ``final`` maps each final state to the outcome it stands for (``exchanged:
    granted``). A loaded spec always holds the machine written out: a preset is
    expanded when the spec is read, and keeps its name in ``preset``.
    """

    states: tuple[str, ...] = ()
    initial: str = ""
    final: Mapping[str, Outcome] = attrs.field(factory=dict)
    transitions: tuple[TransitionSpec, ...] = ()
    ttl: int = 600
    #: The kind of flow it drives, which names the triggers the engine fires.
    kind: str = "authorization_code"
    preset: str | None = None


@attrs.frozen(eq=False)
class FlowSpec:
    """A whole provider flow, validated; build one with ``load_spec``.

    Specs compare and hash by identity, so a compiled machine can be cached per spec.
    """

    name: str
    endpoints: Mapping[str, str]
    grants: Mapping[str, TokenRequest]
    #: The redirect leg; absent in a grant-only spec (Podio's app or password grant).
    authorization: AuthorizationRequest | None = None
    #: The flow's machine; present exactly when ``authorization`` is (a preset when not written).
    machine: MachineSpec | None = None
    #: How a token is revoked (RFC 7009), when the provider can.
    revocation: TokenRequest | None = None
    #: The device authorization grant (RFC 8628), when the provider offers it.
    device: DeviceRequest | None = None
    #: OpenID Connect: a nonce per flow and the ID token validated; the account is ``sub`` in ``iss``.
    openid: OpenIdRules | None = None
    #: Take the endpoints the spec does not write from the issuer's metadata (``openid``:
    #: OpenID Connect Discovery; ``oauth``: RFC 8414).
    discovery: Literal["openid", "oauth"] | None = None
    description: str = ""
    local_only: bool = False
    #: Who issues the tokens (RFC 9207's callback ``iss``, OpenID Connect's ``iss``): a URL, or a
    #: template naming connection variables (``{issuer}`` in the generic ``oidc`` spec).
    issuer: str | None = None
    pkce: bool = False
    inputs: tuple[str, ...] = ()
    #: Values given per connection (``start(connection=...)``), usable in endpoints and parameters.
    connection: Mapping[str, ConnectionVariable] = attrs.field(factory=dict)
    redirect: RedirectRules = RedirectRules()
    callback: CallbackRules = CallbackRules()
    token: TokenResponseRules = TokenResponseRules()
    usage: UsageRules = UsageRules()
    #: Where the spec came from (a file path, ``<text>``); not a YAML key.
    source: str = attrs.field(default="<spec>", eq=False)

    @property
    def scope_separator(self) -> str:
        """How scopes are joined (the authorization request's, else a space)."""
        return self.authorization.scope_separator if self.authorization else " "

    @property
    def variables(self) -> frozenset[str]:
        """Every variable name templates of this spec may use (somewhere)."""
        return BUILTIN_VARIABLES | frozenset(self.inputs) | frozenset(self.connection) | self.kept_names

    @property
    def kept_names(self) -> frozenset[str]:
        """The variables callbacks fill (``callback.keep``)."""
        return frozenset(self.callback.keep)

    @property
    def endpoint_names(self) -> frozenset[str]:
        """The endpoints requests may name: those written, and with ``discovery`` those discovered."""
        discovered = frozenset(DISCOVERED_ENDPOINTS) if self.discovery is not None else frozenset()
        return frozenset(self.endpoints) | discovered
