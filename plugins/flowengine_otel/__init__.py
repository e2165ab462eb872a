"""OpenTelemetry for flowengine: a span per flow step and per provider request, and counters.

Installed with the ``otel`` extra (opentelemetry-api and -sdk). The plugin
observes the engine through two hooks, ``flowengine_transition`` (a step was
stored) and ``flowengine_request`` (a provider request attempt ended), and
reports to the tracer and meter providers the application configured
(``opentelemetry.trace.set_tracer_provider``, ...). Without the extra it
registers no hook, and until a provider is set its hooks say they are not
listening, so the engine neither calls them nor prepares their events.

``Telemetry(tracer_provider=..., meter_provider=...)`` is the same observer with
providers of your choosing, to register on a plugin manager of your own (tests
use the SDK's in-memory exporter this way). Attributes hold names, states,
codes, statuses and URLs without their query: never a token, code, verifier,
state, secret, assertion or header (SECURITY.md 13). See docs/observability.md.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowengine import Flow, RequestEvent, hookimpl, lazy_exports

if TYPE_CHECKING:
    from ._telemetry import Telemetry

__all__ = ["Telemetry", "available"]

__getattr__ = lazy_exports(__name__, {"Telemetry": "._telemetry"})


def available() -> bool:
    """True when opentelemetry-api is installed (the ``otel`` extra)."""
    return importlib.util.find_spec("opentelemetry") is not None


def _configured() -> bool:
    """True once the application set a tracer or meter provider (before that, spans go nowhere).

    Asked before every step and request, so it costs next to nothing: OpenTelemetry sets
    each global provider at most once, so once one is found set that is remembered;
    until then the API's own module globals say whether one is (an attribute read
    each), and only where a provider is named in the environment (which the API
    loads on first use) or those globals are not where this looks are the providers
    asked for through the public API.
    """
    if _SET:
        return True
    unset = _unset()
    if unset is not None:
        if unset():
            return False
    else:
        metrics, trace = _api()
        tracing = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        if not tracing and type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":
            return False
    _SET.append(True)
    return True


@functools.cache
def _unset() -> Callable[[], bool] | None:
    """A check that no global provider is set yet, or None where only the public API can tell."""
    if any(name in os.environ for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")):
        return None
    from opentelemetry import trace
    from opentelemetry.metrics import _internal as metrics

    if getattr(trace, "_TRACER_PROVIDER", _MISSING) is not None:
        return None
    if getattr(metrics, "_METER_PROVIDER", _MISSING) is not None:
        return None
    return lambda: trace._TRACER_PROVIDER is None and metrics._METER_PROVIDER is None


@functools.cache
def _api() -> tuple[Any, Any]:
    """OpenTelemetry's ``metrics`` and ``trace`` modules, imported on first use."""
    from opentelemetry import metrics, trace

    return metrics, trace


#: Holds True once a global provider was found set.
_SET: list[bool] = []
_MISSING = object()


@functools.cache
def _global() -> Telemetry:
    """The observer reporting to the application's global providers, made on first use."""
    from ._telemetry import Telemetry

    return Telemetry()


if available():

    @hookimpl
    def flowengine_transition(flow: Flow, event: str, source: str, dest: str) -> None:
        """A span for the step (and a failure count when it ended the flow with an error)."""
        if _configured():
            _global().step(flow, event, source, dest)

    @hookimpl
    def flowengine_request(event: RequestEvent) -> None:
        """A client span for the request attempt, and the counters it moves."""
        if _configured():
            _global().request(event)

    # Until a provider is set, the engine skips these hooks and prepares nothing for them.
    flowengine_transition.listening = _configured  # type: ignore[attr-defined]
    flowengine_request.listening = _configured  # type: ignore[attr-defined]
