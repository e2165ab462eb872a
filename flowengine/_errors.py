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
    "ErrorCode",
    "FlowError",
    "FlowStateError",
    "InvalidGrantError",
    "PluginError",
    "ProviderError",
    "RateLimitedError",
    "SpecError",
    "SpecProblem",
    "StoreError",
    "TransportError",
    "TransportTimeoutError",
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
