"""The public surface: a sorted __all__ that names only what exists."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import flowengine

#: The public API, exactly: a name added or removed is a decision, made here and in docs/python-api.md.
PUBLIC = [
    "AccountRef", "Action", "AsyncEngine", "CallbackError", "CallbackInput", "Client", "Clock",
    "ConfigError", "DeviceAuthorization", "DiscoveryError", "EdgeView", "Engine", "EngineOptions",
    "Enqueued", "ErrorCode", "ErrorInfo",
    "FailureView", "Flow", "FlowCounts", "FlowError", "FlowSpec", "FlowStateError", "Guard",
    "HealthCount", "HistoryEntry", "HttpRequest", "HttpResponse", "IdTokenError", "InvalidGrantError",
    "JwksError", "Lease", "Outcome", "PluginError", "ProviderError", "RateFeedback", "RateLimit",
    "RateLimitedError", "RecordCodec", "RefreshOrder", "RefreshQueue", "RequestEvent", "RetryPolicy",
    "Sandbox", "SpecError", "SpecProblem", "SpecStatus", "StateCount", "StateView", "Status",
    "StepCount", "Store", "StoreError", "SystemClock", "Token", "TokenCounts", "TokenHealth", "TokenRow",
    "TokenView",
    "TransitionContext", "Transport", "TransportConfig", "TransportError", "TransportTimeoutError",
    "UserinfoError", "WebUrl", "__version__", "attention_order", "callback_state", "check_token_query",
    "codec_for", "digest", "digests_equal", "fingerprint", "flow_columns", "get_plugin_manager", "health_of",
    "hookimpl", "hour_of", "is_loopback", "lazy_exports", "load_spec", "make_private_folder",
    "new_plugin_manager", "new_store_key", "open_sandbox", "open_store", "open_transport",
    "parse_retry_after", "parse_web_url", "pinned_connection", "read_rate_feedback", "read_status",
    "spec_document", "step_of",
]  # fmt: skip

#: The public submodules; every other module of the package is private (underscored).
PUBLIC_MODULES = {"auth", "cli", "hookspecs", "serving", "testing"}


def test_the_public_api_is_exactly_this() -> None:
    assert flowengine.__all__ == PUBLIC


def test_every_other_module_is_private() -> None:
    names = {info.name for info in pkgutil.iter_modules(flowengine.__path__)}
    assert {n for n in names if not n.startswith("_")} == PUBLIC_MODULES


def test_all_is_sorted_and_complete() -> None:
    names = list(flowengine.__all__)
    assert names == sorted(names)
    for name in names:
        assert hasattr(flowengine, name), name


def test_every_core_module_declares_all() -> None:
    for info in pkgutil.iter_modules(flowengine.__path__):
        module = importlib.import_module(f"flowengine.{info.name}")
        if info.name == "cli":
            continue
        assert isinstance(getattr(module, "__all__", None), list), f"flowengine.{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"flowengine.{info.name}.__all__ names missing {name}"


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_the_core_names_no_provider() -> None:
    """DESIGN.md: `grep -ri podio flowengine/` finds nothing but docstrings using it as an example."""
    for info in pkgutil.iter_modules(flowengine.__path__):
        source = importlib.import_module(f"flowengine.{info.name}").__file__
        assert source is not None
        tree = ast.parse(Path(source).read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
            elif isinstance(node, ast.Name | ast.Attribute | ast.FunctionDef | ast.ClassDef):
                text = getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "name", None)
            assert "podio" not in (text or "").lower(), (
                f"flowengine/{info.name}.py names a provider: {text!r}"
            )


def test_the_core_imports_no_adapter() -> None:
    for info in pkgutil.iter_modules(flowengine.__path__):
        source = importlib.import_module(f"flowengine.{info.name}").__file__
        assert source is not None
        text = Path(source).read_text(encoding="utf-8")
        for adapter in (
            "flowengine_memory",
            "flowengine_httpx",
            "flowengine_sandbox",
            "flowengine_cli",
            "httpx",
            "starlette",
        ):
            assert f"import {adapter}" not in text and f"from {adapter}" not in text, (info.name, adapter)
