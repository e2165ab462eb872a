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
from typing import Any

import attrs

from flowengine._bounded import cap
from flowengine._codes import ErrorCode

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
    """A spec could not be loaded or compiled; ``problems`` lists every finding.

    At most ``MAX_PROBLEMS`` are kept (then one more says how many were left out), each
    path and message cut to a readable length: a hostile spec cannot make the report
    itself huge (SECURITY.md 25). The source (the file, and the files it extends or is
    extended by) is cut far later: it names files on the user's disk, and a deep folder
    must not cut off the file name that says where to look.
    """

    code = ErrorCode.SPEC_INVALID
    MAX_PROBLEMS = 50
    MAX_SOURCE = 1000

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        kept = [
            SpecProblem(cap(p.path, 200), cap(p.message, 300), cap(p.source, self.MAX_SOURCE))
            for p in problems[: self.MAX_PROBLEMS]
        ]
        if len(problems) > self.MAX_PROBLEMS:
            more = len(problems) - self.MAX_PROBLEMS
            kept.append(SpecProblem("$", f"and {more} more problem(s) not listed", kept[0].source))
        self.problems = tuple(kept)
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
        ErrorCode.OUTPUT_UNWRITABLE,
        ErrorCode.CONNECTION_INVALID,
        ErrorCode.CONNECTION_PINNED,
        ErrorCode.TOKEN_ENDPOINT_MISMATCH,
        ErrorCode.URL_INVALID,
        ErrorCode.STORE_NOT_SHARED,
        ErrorCode.DEVICE_UNSUPPORTED,
        ErrorCode.STATUS_WINDOW_INVALID,
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
        ErrorCode.QUEUE_UNSUPPORTED,
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
        ErrorCode.INVALID_DEVICE_RESPONSE,
        ErrorCode.DEVICE_CODE_EXPIRED,
        ErrorCode.DEVICE_PENDING_TIMEOUT,
    ),
    InvalidGrantError: (ErrorCode.INVALID_GRANT,),
    RateLimitedError: (ErrorCode.RATE_LIMITED,),
    DiscoveryError: (
        ErrorCode.DISCOVERY_INVALID,
        ErrorCode.DISCOVERY_UNAVAILABLE,
        ErrorCode.DISCOVERY_ISSUER_MISMATCH,
        ErrorCode.DISCOVERY_INSECURE_URL,
        ErrorCode.DISCOVERY_ENDPOINT_MISSING,
    ),
    JwksError: (
        ErrorCode.JWKS_INVALID,
        ErrorCode.JWKS_UNAVAILABLE,
    ),
    IdTokenError: (
        ErrorCode.ID_TOKEN_MISSING,
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
        ErrorCode.REFRESH_INTERRUPTED,
    ),
    TransportTimeoutError: (ErrorCode.TRANSPORT_TIMEOUT,),
    StoreError: (
        ErrorCode.STORE_UNAVAILABLE,
        ErrorCode.STORE_CORRUPT,
        ErrorCode.STORE_KEY_MISSING,
        ErrorCode.STORE_CONFLICT,
        ErrorCode.TOKEN_UNSAVED,
        ErrorCode.STORE_REPLACED,
    ),
}

#: The class each code belongs to (raise it with that class or a subclass of it).
ERROR_CLASSES: Mapping[ErrorCode, type[FlowError]] = {
    code: cls for cls, codes in _OWNERS.items() for code in codes
}
assert set(ERROR_CLASSES) == set(ErrorCode), "every ErrorCode belongs to exactly one class"
