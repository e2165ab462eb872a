"""One exception tree for everything flowengine refuses or fails at.

Every error carries a stable ``code`` (for programs, logs and exit codes), a
message a person can act on, and ``retryable``: whether trying the same thing
again may succeed. Provider error bodies are kept on ``ProviderError.body`` so
nothing the provider said is lost. No error message ever holds a token, code,
verifier or secret: callers build messages from names, never from values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "CallbackError",
    "ConfigError",
    "FlowError",
    "FlowStateError",
    "PluginError",
    "ProviderError",
    "SpecError",
    "SpecProblem",
    "StoreError",
    "TransportError",
]


class FlowError(Exception):
    """Base of every error flowengine raises on purpose."""

    code: str = "flow_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        flow_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.flow_id = flow_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


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

    code = "spec_invalid"

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in spec:\n{lines}")


class ConfigError(FlowError):
    """The engine was configured wrongly (client, redirect URI, endpoint override)."""

    code = "config_invalid"


class PluginError(FlowError):
    """No plugin could provide what was asked for.

    Codes: ``store_unsupported``, ``transport_unsupported``, ``sandbox_unsupported``,
    ``sandbox_unreachable``, ``spec_not_found``, ``plugin_conflict``.
    """

    code = "plugin_error"


class CallbackError(FlowError):
    """A callback was rejected before any token request was sent.

    Codes: ``state_missing``, ``state_unknown``, ``state_used``, ``flow_expired``,
    ``session_mismatch``, ``wrong_provider``, ``issuer_mismatch``,
    ``repeated_parameter``, ``callback_invalid``.
    """

    code = "callback_invalid"


class FlowStateError(FlowError):
    """An operation does not apply to the flow in its current state."""

    code = "invalid_transition"


class ProviderError(FlowError):
    """The authorization server answered with an error or with something unusable.

    Codes: ``access_denied``, ``invalid_grant``, ``invalid_client``,
    ``unauthorized``, ``rate_limited``, ``provider_unavailable``,
    ``provider_error``, ``invalid_token_response``, ``missing_code``,
    ``exchange_interrupted`` (an earlier exchange may have spent the code).
    """

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
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


class TransportError(FlowError):
    """The request could not be completed over the network.

    ``sent`` says whether the request may have reached the server: a code
    exchange is never retried once it may have (codes are single-use).
    Codes: ``transport_timeout``, ``transport_error``, ``response_too_large``.
    """

    code = "transport_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = True,
        sent: bool = True,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.sent = sent


class StoreError(FlowError):
    """The store failed or holds something it cannot read.

    Codes: ``store_unavailable``, ``store_corrupt``, ``store_conflict``.
    """

    code = "store_unavailable"
    retryable = True
