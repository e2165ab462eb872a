"""flowengine: a declarative OAuth flow engine.

A YAML flow spec describes a provider's flow; the engine compiles it into a
state machine and drives flows through it; pluggy hooks supply the store, the
HTTP transport and the frontends.

Everything public is importable from here; the modules behind it are private
(``flowengine._driver``, ...), as in httpx. The public submodules are
``flowengine.hookspecs`` (the plugin contract), ``flowengine.cli`` (the command
and what plugins adding commands share), ``flowengine.serving`` (a loopback
ASGI server) and ``flowengine.testing`` (a handler transport and a fake clock for tests).

``import flowengine`` itself imports nothing else: each public name is loaded from
its module the first time it is used (``from flowengine import AsyncEngine``, or
``flowengine.AsyncEngine``), PEP 562's module ``__getattr__``, so a program or a
plugin pays only for the parts it uses. Type checkers read the imports below.
"""

from __future__ import annotations

#: ``typing`` is not imported for this: it would be most of what ``import flowengine`` costs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from flowengine._callbacks import CallbackInput, callback_state
    from flowengine._client import Client
    from flowengine._clock import Clock, SystemClock
    from flowengine._codec import RecordCodec, codec_for, new_store_key
    from flowengine._driver import AsyncEngine, EngineOptions
    from flowengine._errors import (
        CallbackError,
        ConfigError,
        DiscoveryError,
        ErrorCode,
        FlowError,
        FlowStateError,
        IdTokenError,
        InvalidGrantError,
        JwksError,
        PluginError,
        ProviderError,
        RateLimitedError,
        SpecError,
        SpecProblem,
        StoreError,
        TransportError,
        TransportTimeoutError,
        UserinfoError,
    )
    from flowengine._events import Enqueued, RefreshOrder, RefreshQueue, RequestEvent
    from flowengine._files import make_private_folder
    from flowengine._hosts import pinned_connection
    from flowengine._http import HttpRequest, HttpResponse, Transport, TransportConfig
    from flowengine._machine import Action, Guard, TransitionContext
    from flowengine._plugins import (
        get_plugin_manager,
        lazy_exports,
        new_plugin_manager,
        open_sandbox,
        open_store,
        open_transport,
    )
    from flowengine._ratelimit import RateFeedback, RateLimit, read_rate_feedback
    from flowengine._records import (
        AccountRef,
        DeviceAuthorization,
        ErrorInfo,
        Flow,
        HistoryEntry,
        Outcome,
        Token,
    )
    from flowengine._retry import RetryPolicy, parse_retry_after
    from flowengine._sandbox import Sandbox
    from flowengine._security import digest, digests_equal, fingerprint, is_loopback
    from flowengine._spec import FlowSpec
    from flowengine._spec_load import load_spec, spec_document
    from flowengine._stats import (
        FlowCounts,
        HealthCount,
        StateCount,
        StepCount,
        TokenCounts,
        TokenHealth,
        attention_order,
        check_token_query,
        flow_columns,
        health_of,
        hour_of,
        step_of,
    )
    from flowengine._status import EdgeView, FailureView, SpecStatus, StateView, Status, TokenRow, TokenView
    from flowengine._status_read import read_status
    from flowengine._store import Lease, Store
    from flowengine._sync import Engine
    from flowengine._urls import WebUrl, parse_web_url
    from flowengine.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "AccountRef",
    "Action",
    "AsyncEngine",
    "CallbackError",
    "CallbackInput",
    "Client",
    "Clock",
    "ConfigError",
    "DeviceAuthorization",
    "DiscoveryError",
    "EdgeView",
    "Engine",
    "EngineOptions",
    "Enqueued",
    "ErrorCode",
    "ErrorInfo",
    "FailureView",
    "Flow",
    "FlowCounts",
    "FlowError",
    "FlowSpec",
    "FlowStateError",
    "Guard",
    "HealthCount",
    "HistoryEntry",
    "HttpRequest",
    "HttpResponse",
    "IdTokenError",
    "InvalidGrantError",
    "JwksError",
    "Lease",
    "Outcome",
    "PluginError",
    "ProviderError",
    "RateFeedback",
    "RateLimit",
    "RateLimitedError",
    "RecordCodec",
    "RefreshOrder",
    "RefreshQueue",
    "RequestEvent",
    "RetryPolicy",
    "Sandbox",
    "SpecError",
    "SpecProblem",
    "SpecStatus",
    "StateCount",
    "StateView",
    "Status",
    "StepCount",
    "Store",
    "StoreError",
    "SystemClock",
    "Token",
    "TokenCounts",
    "TokenHealth",
    "TokenRow",
    "TokenView",
    "TransitionContext",
    "Transport",
    "TransportConfig",
    "TransportError",
    "TransportTimeoutError",
    "UserinfoError",
    "WebUrl",
    "__version__",
    "attention_order",
    "callback_state",
    "check_token_query",
    "codec_for",
    "digest",
    "digests_equal",
    "fingerprint",
    "flow_columns",
    "get_plugin_manager",
    "health_of",
    "hookimpl",
    "hour_of",
    "is_loopback",
    "lazy_exports",
    "load_spec",
    "make_private_folder",
    "new_plugin_manager",
    "new_store_key",
    "open_sandbox",
    "open_store",
    "open_transport",
    "parse_retry_after",
    "parse_web_url",
    "pinned_connection",
    "read_rate_feedback",
    "read_status",
    "spec_document",
    "step_of",
]

#: Where each public name lives: module (under flowengine) -> the names it defines.
_HOMES = {
    "_callbacks": "callback_state CallbackInput",
    "_client": "Client",
    "_clock": "Clock SystemClock",
    "_codec": "codec_for new_store_key RecordCodec",
    "_driver": "AsyncEngine EngineOptions",
    "_errors": (
        "CallbackError ConfigError DiscoveryError ErrorCode FlowError FlowStateError "
        "IdTokenError InvalidGrantError JwksError PluginError ProviderError "
        "RateLimitedError SpecError SpecProblem StoreError TransportError "
        "TransportTimeoutError UserinfoError"
    ),
    "_events": "Enqueued RefreshOrder RefreshQueue RequestEvent",
    "_files": "make_private_folder",
    "_hosts": "pinned_connection",
    "_http": "HttpRequest HttpResponse Transport TransportConfig",
    "_machine": "Action Guard TransitionContext",
    "_plugins": "get_plugin_manager lazy_exports new_plugin_manager open_sandbox open_store open_transport",
    "_ratelimit": "RateFeedback RateLimit read_rate_feedback",
    "_records": "AccountRef DeviceAuthorization ErrorInfo Flow HistoryEntry Outcome Token",
    "_retry": "parse_retry_after RetryPolicy",
    "_sandbox": "Sandbox",
    "_security": "digest digests_equal fingerprint is_loopback",
    "_spec": "FlowSpec",
    "_spec_load": "load_spec spec_document",
    "_stats": (
        "attention_order check_token_query FlowCounts flow_columns health_of HealthCount hour_of "
        "StateCount step_of StepCount TokenCounts TokenHealth"
    ),
    "_status": "EdgeView FailureView SpecStatus StateView Status TokenRow TokenView",
    "_status_read": "read_status",
    "_store": "Lease Store",
    "_sync": "Engine",
    "_urls": "parse_web_url WebUrl",
    "hookspecs": "hookimpl",
}
_HOME = {name: module for module, names in _HOMES.items() for name in names.split()}


# Hidden from type checkers, which read the imports above: to them a module ``__getattr__``
# would make every misspelt ``flowengine.X`` a valid name of type ``Any``.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Import a public name's module on first use, and keep the name here (PEP 562).

        A submodule asked for as an attribute (``flowengine._security``,
        ``flowengine.testing``) is imported then too.
        """
        from importlib import import_module

        module = _HOME.get(name)
        if module is not None:
            value = getattr(import_module(f"flowengine.{module}"), name)
            globals()[name] = value
            return value
        if not name.startswith("__"):
            try:
                return import_module(f"flowengine.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"flowengine.{name}":
                    raise
        raise AttributeError(f"module 'flowengine' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
