"""flowengine: a declarative OAuth flow engine.

A YAML flow spec describes a provider's flow; the engine compiles it into a
state machine and drives flows through it; pluggy hooks supply the store, the
HTTP transport and the frontends.
"""

from flowengine.client import Client
from flowengine.compiler import CallbackParams, CompiledFlow, TransitionContext, compile_flow
from flowengine.engine import AsyncEngine, RetryPolicy
from flowengine.errors import (
    CallbackError,
    ConfigError,
    FlowError,
    FlowStateError,
    PluginError,
    ProviderError,
    SpecError,
    SpecProblem,
    StoreError,
    TransportError,
)
from flowengine.hookspecs import hookimpl
from flowengine.http import HttpRequest, HttpResponse, Transport, TransportConfig
from flowengine.records import AccountRef, ErrorInfo, Flow, HistoryEntry, Token
from flowengine.sandbox import Sandbox
from flowengine.spec import FlowSpec, load_spec
from flowengine.store import Lease, Store
from flowengine.sync import Engine

__version__ = "0.1.0"

__all__ = [
    "AccountRef",
    "AsyncEngine",
    "CallbackError",
    "CallbackParams",
    "Client",
    "CompiledFlow",
    "ConfigError",
    "Engine",
    "ErrorInfo",
    "Flow",
    "FlowError",
    "FlowSpec",
    "FlowStateError",
    "HistoryEntry",
    "HttpRequest",
    "HttpResponse",
    "Lease",
    "PluginError",
    "ProviderError",
    "RetryPolicy",
    "Sandbox",
    "SpecError",
    "SpecProblem",
    "Store",
    "StoreError",
    "Token",
    "TransitionContext",
    "Transport",
    "TransportConfig",
    "TransportError",
    "__version__",
    "compile_flow",
    "hookimpl",
    "load_spec",
]
