"""One exception tree for everything flowengine refuses or fails at, and one registry of codes.

Every error carries a stable ``code`` (for programs, logs and exit codes), a
message a person can act on, and ``retryable``: whether trying the same thing
again may succeed. Each code belongs to exactly one class (``ERROR_CLASSES``),
so a program that branches on a code and one that branches on a class agree;
raising a code from the wrong class is a bug that fails at once. Provider error
bodies are kept on ``ProviderError.body`` so nothing the provider said is lost.
No error message ever holds a token, code, verifier or secret: callers build
messages from names, never from values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import attrs

__all__ = [
    "ERROR_CLASSES",
    "CallbackError",
    "ConfigError",
    "DiscoveryError",
    "ErrorCode",
    "FlowError",
    "FlowStateError",
    "IdTokenError",
    "InvalidGrantError",
    "JwksError",
    "PluginError",
    "ProviderError",
    "RateLimitedError",
    "SpecError",
    "SpecProblem",
    "StoreError",
    "TransportError",
    "TransportTimeoutError",
    "UserinfoError",
]


class ErrorCode(StrEnum):
    """Every code a flowengine error can carry; ``ERROR_CLASSES`` says which class raises it."""

    INTERNAL_ERROR = "internal_error"
    GRAPHVIZ_FAILED = "graphviz_failed"
    LOGIN_TIMEOUT = "login_timeout"
    PASTE_ENDED = "paste_ended"
    SPEC_INVALID = "spec_invalid"
    # ConfigError
    CONFIG_INVALID = "config_invalid"
    REDIRECT_URI_INVALID = "redirect_uri_invalid"
    GRANT_UNSUPPORTED = "grant_unsupported"
    GRANT_ONLY_SPEC = "grant_only_spec"
    REVOCATION_UNSUPPORTED = "revocation_unsupported"
    STORE_URL_INVALID = "store_url_invalid"
    STORE_KEY_INVALID = "store_key_invalid"
    STATE_BUSY = "state_busy"
    STATE_MISMATCH = "state_mismatch"
    PORT_IN_USE = "port_in_use"
    LISTEN_FAILED = "listen_failed"
    CREDENTIALS_MISSING = "credentials_missing"
    GRAPHVIZ_MISSING = "graphviz_missing"
    CONNECTION_INVALID = "connection_invalid"
    # PluginError
    PLUGIN_ERROR = "plugin_error"
    SPEC_NOT_FOUND = "spec_not_found"
    STORE_UNSUPPORTED = "store_unsupported"
    TRANSPORT_UNSUPPORTED = "transport_unsupported"
    SANDBOX_UNSUPPORTED = "sandbox_unsupported"
    SANDBOX_UNREACHABLE = "sandbox_unreachable"
    SANDBOX_REFUSED = "sandbox_refused"
    PLUGIN_CONFLICT = "plugin_conflict"
    EXTRA_MISSING = "extra_missing"
    # CallbackError
    CALLBACK_INVALID = "callback_invalid"
    STATE_MISSING = "state_missing"
    STATE_UNKNOWN = "state_unknown"
    STATE_USED = "state_used"
    FLOW_EXPIRED = "flow_expired"
    SESSION_MISMATCH = "session_mismatch"
    WRONG_PROVIDER = "wrong_provider"
    ISSUER_MISMATCH = "issuer_mismatch"
    REPEATED_PARAMETER = "repeated_parameter"
    ENDPOINTS_MISMATCH = "endpoints_mismatch"
    # FlowStateError
    INVALID_TRANSITION = "invalid_transition"
    FLOW_UNKNOWN = "flow_unknown"
    TOKEN_UNKNOWN = "token_unknown"
    NO_REFRESH_TOKEN = "no_refresh_token"
    NO_ACCESS_TOKEN = "no_access_token"
    # ProviderError
    ACCESS_DENIED = "access_denied"
    PROVIDER_ERROR = "provider_error"
    MISSING_CODE = "missing_code"
    INVALID_CLIENT = "invalid_client"
    UNAUTHORIZED = "unauthorized"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    INVALID_TOKEN_RESPONSE = "invalid_token_response"
    EXCHANGE_INTERRUPTED = "exchange_interrupted"
    INVALID_GRANT = "invalid_grant"
    RATE_LIMITED = "rate_limited"
    # TransportError
    TRANSPORT_ERROR = "transport_error"
    RESPONSE_TOO_LARGE = "response_too_large"
    BATCH_STOPPED = "batch_stopped"
    RATE_LIMIT_DEFERRED = "rate_limit_deferred"
    TRANSPORT_TIMEOUT = "transport_timeout"
    # StoreError
    STORE_UNAVAILABLE = "store_unavailable"
    STORE_CORRUPT = "store_corrupt"
    STORE_KEY_MISSING = "store_key_missing"
    STORE_CONFLICT = "store_conflict"
    TOKEN_UNSAVED = "token_unsaved"
    # OpenID Connect (ConfigError for the engine's own settings; the rest from the provider)
    ISSUER_INVALID = "issuer_invalid"
    ID_TOKEN_RULES_INVALID = "id_token_rules_invalid"
    CLIENT_KEY_INVALID = "client_key_invalid"
    CLIENT_SECRET_TOO_SHORT = "client_secret_too_short"
    CLIENT_AUTH_INVALID = "client_auth_invalid"
    DISCOVERY_INVALID = "discovery_invalid"
    DISCOVERY_UNAVAILABLE = "discovery_unavailable"
    DISCOVERY_ISSUER_MISMATCH = "discovery_issuer_mismatch"
    DISCOVERY_INSECURE_URL = "discovery_insecure_url"
    JWKS_INVALID = "jwks_invalid"
    JWKS_UNAVAILABLE = "jwks_unavailable"
    ID_TOKEN_MALFORMED = "id_token_malformed"
    ID_TOKEN_ALG_NOT_ALLOWED = "id_token_alg_not_allowed"
    ID_TOKEN_UNKNOWN_KEY = "id_token_unknown_key"
    ID_TOKEN_INVALID_SIGNATURE = "id_token_invalid_signature"
    ID_TOKEN_CLAIM_MISSING = "id_token_claim_missing"
    ID_TOKEN_CLAIM_INVALID = "id_token_claim_invalid"
    ID_TOKEN_WRONG_ISSUER = "id_token_wrong_issuer"
    ID_TOKEN_WRONG_AUDIENCE = "id_token_wrong_audience"
    ID_TOKEN_UNTRUSTED_AUDIENCE = "id_token_untrusted_audience"
    ID_TOKEN_AZP_MISSING = "id_token_azp_missing"
    ID_TOKEN_WRONG_AZP = "id_token_wrong_azp"
    ID_TOKEN_EXPIRED = "id_token_expired"
    ID_TOKEN_ISSUED_IN_FUTURE = "id_token_issued_in_future"
    ID_TOKEN_NOT_YET_VALID = "id_token_not_yet_valid"
    ID_TOKEN_NONCE_MISSING = "id_token_nonce_missing"
    ID_TOKEN_NONCE_MISMATCH = "id_token_nonce_mismatch"
    ID_TOKEN_AT_HASH_MISMATCH = "id_token_at_hash_mismatch"
    ID_TOKEN_AUTH_TIME_MISSING = "id_token_auth_time_missing"
    ID_TOKEN_AUTH_TOO_OLD = "id_token_auth_too_old"
    USERINFO_UNAUTHORIZED = "userinfo_unauthorized"
    USERINFO_UNAVAILABLE = "userinfo_unavailable"
    USERINFO_INVALID = "userinfo_invalid"
    USERINFO_SUB_MISMATCH = "userinfo_sub_mismatch"
    USERINFO_MALFORMED = "userinfo_malformed"
    USERINFO_ALG_NOT_ALLOWED = "userinfo_alg_not_allowed"
    USERINFO_UNKNOWN_KEY = "userinfo_unknown_key"
    USERINFO_INVALID_SIGNATURE = "userinfo_invalid_signature"
    USERINFO_WRONG_ISSUER = "userinfo_wrong_issuer"
    USERINFO_WRONG_AUDIENCE = "userinfo_wrong_audience"


class FlowError(Exception):
    """Base of every error flowengine raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    retryable: bool = False

    def __new__(cls, *args: Any, code: ErrorCode | str | None = None, **kwargs: Any) -> FlowError:
        # A code owned by a subclass makes that subclass: `ProviderError(..., code="invalid_grant")`
        # is an InvalidGrantError, so catching by class and branching on code always agree.
        owner = ERROR_CLASSES.get(ErrorCode(code), cls) if code is not None else cls
        return super().__new__(owner if issubclass(owner, cls) else cls)

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | str | None = None,
        retryable: bool | None = None,
        flow_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = _registered(type(self), code)
        if retryable is not None:
            self.retryable = retryable
        self.flow_id = flow_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={str(self.code)!r}, message={self.message!r})"


def _registered(cls: type[FlowError], code: ErrorCode | str) -> ErrorCode:
    """``code`` as an ErrorCode, after checking that ``cls`` is the class it belongs to.

    A code of a subclass is fine (``__new__`` made that subclass); a code of another
    branch is a bug in flowengine (or a plugin), found by the first test that raises
    it: so it is an assertion, not a FlowError.
    """
    member = ErrorCode(code)
    owner = ERROR_CLASSES.get(member, FlowError)
    if not issubclass(cls, owner):
        raise AssertionError(f"error code {member!s} belongs to {owner.__name__}, not {cls.__name__}")
    return member


@attrs.frozen
class SpecProblem:
    """One thing wrong with a spec: where (a JSON-path-like ``$.a.b[2]``) and what."""

    path: str
    message: str
    source: str = "<spec>"

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


class SpecError(FlowError):
    """A spec could not be loaded or compiled; ``problems`` lists every finding."""

    code = ErrorCode.SPEC_INVALID

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in spec:\n{lines}")


class ConfigError(FlowError):
    """The engine was configured wrongly (client, redirect URI, endpoint override, store URL)."""

    code = ErrorCode.CONFIG_INVALID


class PluginError(FlowError):
    """No plugin could provide what was asked for, or two plugins disagree."""

    code = ErrorCode.PLUGIN_ERROR


class CallbackError(FlowError):
    """A callback was rejected before any token request was sent; nothing changed."""

    code = ErrorCode.CALLBACK_INVALID


class FlowStateError(FlowError):
    """An operation does not apply to the flow or token in its current state."""

    code = ErrorCode.INVALID_TRANSITION


class ProviderError(FlowError):
    """The authorization server answered with an error or with something unusable."""

    code = ErrorCode.PROVIDER_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | str | None = None,
        retryable: bool | None = None,
        flow_id: str | None = None,
        status: int | None = None,
        body: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable, flow_id=flow_id)
        self.status = status
        self.body: dict[str, Any] = dict(body or {})
        self.retry_after = retry_after

    @property
    def provider_error(self) -> str | None:
        """The provider's own ``error`` value, when its body had one."""
        value = self.body.get("error")
        return value if isinstance(value, str) else None

    @property
    def description(self) -> str | None:
        """The provider's ``error_description``, when its body had one."""
        value = self.body.get("error_description")
        return value if isinstance(value, str) else None


class InvalidGrantError(ProviderError):
    """The grant is dead (a used, revoked or expired code or refresh token): a person must log in again."""

    code = ErrorCode.INVALID_GRANT


class RateLimitedError(ProviderError):
    """The provider rate-limited the request; ``retry_after`` says when to try again, if it said."""

    code = ErrorCode.RATE_LIMITED
    retryable = True


class DiscoveryError(ProviderError):
    """The issuer's discovery document was unusable (wrong issuer, bad URL, not JSON...)."""

    code = ErrorCode.DISCOVERY_INVALID


class JwksError(ProviderError):
    """The issuer's key set (``jwks_uri``) could not be fetched or read."""

    code = ErrorCode.JWKS_INVALID


class IdTokenError(ProviderError):
    """An ID token failed one of OpenID Connect Core 1.0 §3.1.3.7's checks; the code says which."""

    code = ErrorCode.ID_TOKEN_MALFORMED


class UserinfoError(ProviderError):
    """The userinfo answer was refused (unauthorized, unreadable, another ``sub``...)."""

    code = ErrorCode.USERINFO_INVALID


class TransportError(FlowError):
    """The request could not be completed over the network.

    ``sent`` says whether the request may have reached the server: a code
    exchange is never retried once it may have (codes are single-use).
    """

    code = ErrorCode.TRANSPORT_ERROR
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | str | None = None,
        retryable: bool | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.sent = sent


class TransportTimeoutError(TransportError):
    """A request or an operation ran past its deadline."""

    code = ErrorCode.TRANSPORT_TIMEOUT


class StoreError(FlowError):
    """The store failed, holds something it cannot read, or lost a race."""

    code = ErrorCode.STORE_UNAVAILABLE
    retryable = True


_OWNERS: dict[type[FlowError], tuple[ErrorCode, ...]] = {
    FlowError: (
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.GRAPHVIZ_FAILED,
        ErrorCode.LOGIN_TIMEOUT,
        ErrorCode.PASTE_ENDED,
    ),
    SpecError: (ErrorCode.SPEC_INVALID,),
    ConfigError: (
        ErrorCode.CONFIG_INVALID,
        ErrorCode.REDIRECT_URI_INVALID,
        ErrorCode.GRANT_UNSUPPORTED,
        ErrorCode.GRANT_ONLY_SPEC,
        ErrorCode.REVOCATION_UNSUPPORTED,
        ErrorCode.STORE_URL_INVALID,
        ErrorCode.STORE_KEY_INVALID,
        ErrorCode.STATE_BUSY,
        ErrorCode.STATE_MISMATCH,
        ErrorCode.PORT_IN_USE,
        ErrorCode.LISTEN_FAILED,
        ErrorCode.CREDENTIALS_MISSING,
        ErrorCode.GRAPHVIZ_MISSING,
        ErrorCode.CONNECTION_INVALID,
        ErrorCode.ISSUER_INVALID,
        ErrorCode.ID_TOKEN_RULES_INVALID,
        ErrorCode.CLIENT_KEY_INVALID,
        ErrorCode.CLIENT_SECRET_TOO_SHORT,
        ErrorCode.CLIENT_AUTH_INVALID,
    ),
    PluginError: (
        ErrorCode.PLUGIN_ERROR,
        ErrorCode.SPEC_NOT_FOUND,
        ErrorCode.STORE_UNSUPPORTED,
        ErrorCode.TRANSPORT_UNSUPPORTED,
        ErrorCode.SANDBOX_UNSUPPORTED,
        ErrorCode.SANDBOX_UNREACHABLE,
        ErrorCode.SANDBOX_REFUSED,
        ErrorCode.PLUGIN_CONFLICT,
        ErrorCode.EXTRA_MISSING,
    ),
    CallbackError: (
        ErrorCode.CALLBACK_INVALID,
        ErrorCode.STATE_MISSING,
        ErrorCode.STATE_UNKNOWN,
        ErrorCode.STATE_USED,
        ErrorCode.FLOW_EXPIRED,
        ErrorCode.SESSION_MISMATCH,
        ErrorCode.WRONG_PROVIDER,
        ErrorCode.ISSUER_MISMATCH,
        ErrorCode.REPEATED_PARAMETER,
        ErrorCode.ENDPOINTS_MISMATCH,
    ),
    FlowStateError: (
        ErrorCode.INVALID_TRANSITION,
        ErrorCode.FLOW_UNKNOWN,
        ErrorCode.TOKEN_UNKNOWN,
        ErrorCode.NO_REFRESH_TOKEN,
        ErrorCode.NO_ACCESS_TOKEN,
    ),
    ProviderError: (
        ErrorCode.ACCESS_DENIED,
        ErrorCode.PROVIDER_ERROR,
        ErrorCode.MISSING_CODE,
        ErrorCode.INVALID_CLIENT,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.INVALID_TOKEN_RESPONSE,
        ErrorCode.EXCHANGE_INTERRUPTED,
    ),
    InvalidGrantError: (ErrorCode.INVALID_GRANT,),
    RateLimitedError: (ErrorCode.RATE_LIMITED,),
    DiscoveryError: (
        ErrorCode.DISCOVERY_INVALID,
        ErrorCode.DISCOVERY_UNAVAILABLE,
        ErrorCode.DISCOVERY_ISSUER_MISMATCH,
        ErrorCode.DISCOVERY_INSECURE_URL,
    ),
    JwksError: (
        ErrorCode.JWKS_INVALID,
        ErrorCode.JWKS_UNAVAILABLE,
    ),
    IdTokenError: (
        ErrorCode.ID_TOKEN_MALFORMED,
        ErrorCode.ID_TOKEN_ALG_NOT_ALLOWED,
        ErrorCode.ID_TOKEN_UNKNOWN_KEY,
        ErrorCode.ID_TOKEN_INVALID_SIGNATURE,
        ErrorCode.ID_TOKEN_CLAIM_MISSING,
        ErrorCode.ID_TOKEN_CLAIM_INVALID,
        ErrorCode.ID_TOKEN_WRONG_ISSUER,
        ErrorCode.ID_TOKEN_WRONG_AUDIENCE,
        ErrorCode.ID_TOKEN_UNTRUSTED_AUDIENCE,
        ErrorCode.ID_TOKEN_AZP_MISSING,
        ErrorCode.ID_TOKEN_WRONG_AZP,
        ErrorCode.ID_TOKEN_EXPIRED,
        ErrorCode.ID_TOKEN_ISSUED_IN_FUTURE,
        ErrorCode.ID_TOKEN_NOT_YET_VALID,
        ErrorCode.ID_TOKEN_NONCE_MISSING,
        ErrorCode.ID_TOKEN_NONCE_MISMATCH,
        ErrorCode.ID_TOKEN_AT_HASH_MISMATCH,
        ErrorCode.ID_TOKEN_AUTH_TIME_MISSING,
        ErrorCode.ID_TOKEN_AUTH_TOO_OLD,
    ),
    UserinfoError: (
        ErrorCode.USERINFO_UNAUTHORIZED,
        ErrorCode.USERINFO_UNAVAILABLE,
        ErrorCode.USERINFO_INVALID,
        ErrorCode.USERINFO_SUB_MISMATCH,
        ErrorCode.USERINFO_MALFORMED,
        ErrorCode.USERINFO_ALG_NOT_ALLOWED,
        ErrorCode.USERINFO_UNKNOWN_KEY,
        ErrorCode.USERINFO_INVALID_SIGNATURE,
        ErrorCode.USERINFO_WRONG_ISSUER,
        ErrorCode.USERINFO_WRONG_AUDIENCE,
    ),
    TransportError: (
        ErrorCode.TRANSPORT_ERROR,
        ErrorCode.RESPONSE_TOO_LARGE,
        ErrorCode.BATCH_STOPPED,
        ErrorCode.RATE_LIMIT_DEFERRED,
    ),
    TransportTimeoutError: (ErrorCode.TRANSPORT_TIMEOUT,),
    StoreError: (
        ErrorCode.STORE_UNAVAILABLE,
        ErrorCode.STORE_CORRUPT,
        ErrorCode.STORE_KEY_MISSING,
        ErrorCode.STORE_CONFLICT,
        ErrorCode.TOKEN_UNSAVED,
    ),
}

#: The class each code belongs to (raise it with that class or a subclass of it).
ERROR_CLASSES: Mapping[ErrorCode, type[FlowError]] = {
    code: cls for cls, codes in _OWNERS.items() for code in codes
}
assert set(ERROR_CLASSES) == set(ErrorCode), "every ErrorCode belongs to exactly one class"
