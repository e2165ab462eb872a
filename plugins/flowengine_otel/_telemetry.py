"""The observer: flow steps and provider requests as spans, outcomes as counters.

Structure of a trace (docs/observability.md draws one login):

- a step's span (``flowengine.step EVENT``) is a child of whatever span is current
  where the engine runs (your web request's, your Celery task's), or a root;
  it marks the moment the step was stored, so it starts and ends at once;
- a request's span (``flowengine.request PURPOSE``, kind CLIENT) is a child of the
  span of the step that sent it (the exchange step, for a code exchange), else
  of the current span (refresh, grant, revocation); it covers the attempt, and
  each retry is a span of its own with ``http.request.resend_count``.

Counters: ``flowengine.exchanges`` and ``flowengine.refreshes`` (by ``flowengine.result``:
``ok`` or the error code, once per operation: the last attempt decides),
``flowengine.failures`` (by ``error.type``: a flow that ended with an error, or a
refresh, grant or revocation whose last attempt failed; a failed exchange counts
once, through its flow), ``flowengine.rate_limit_waits`` (each time the engine
waits because the provider said it was rate limited) and the
``http.client.request.duration`` histogram.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from flowengine import Flow, RequestEvent, hookimpl
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

__all__ = ["Telemetry"]

_SCOPE = "flowengine"
#: How many flows' last step span a process remembers to parent their requests on.
_REMEMBERED_FLOWS = 4096


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Telemetry:
    """Spans and counters for one engine's (or one process's) flows and requests.

    Register an instance on a plugin manager (``pm.register(Telemetry(...))``)
    to report to providers of your own; the plugin's module-level hooks use one
    made with the global providers.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        import flowengine

        version = flowengine.__version__
        self.tracer = trace.get_tracer(_SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, version, meter_provider=meter_provider)
        self.exchanges = meter.create_counter(
            "flowengine.exchanges", "{exchange}", "Code exchanges, by result"
        )
        self.refreshes = meter.create_counter(
            "flowengine.refreshes", "{refresh}", "Token refreshes, by result"
        )
        self.failures = meter.create_counter(
            "flowengine.failures", "{failure}", "Flows and token operations that ended in an error, by code"
        )
        self.rate_limit_waits = meter.create_counter(
            "flowengine.rate_limit_waits", "{wait}", "Waits because the provider said it was rate limited"
        )
        self.durations = meter.create_histogram(
            "http.client.request.duration", "s", "Provider request attempts, sent to answered"
        )
        self._steps: OrderedDict[str, SpanContext] = OrderedDict()
        self._lock = threading.Lock()

    # --- steps ------------------------------------------------------------------------

    @hookimpl
    def flowengine_transition(self, flow: Flow, event: str, source: str, dest: str) -> None:
        """See ``step``."""
        self.step(flow, event, source, dest)

    def step(self, flow: Flow, event: str, source: str, dest: str) -> None:
        """A span for one stored transition; remembered as the parent of the flow's next request."""
        last = flow.history[-1] if flow.history else None
        code = str(last.error) if last is not None and last.event == event and last.error else None
        attributes: dict[str, str] = {
            "flowengine.spec": flow.spec,
            "flowengine.flow.id": flow.id,
            "flowengine.event": event,
            "flowengine.state.before": source,
            "flowengine.state.after": dest,
        }
        if flow.outcome is not None:
            attributes["flowengine.outcome"] = str(flow.outcome)
        if code:
            attributes["error.type"] = code
        now = time.time_ns()
        span = self.tracer.start_span(f"flowengine.step {event}", attributes=attributes, start_time=now)
        if code:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=now)
        self._remember(flow, span.get_span_context())
        if flow.outcome is not None and flow.outcome != "granted":
            reason = str(flow.error.code) if flow.error is not None else str(flow.outcome)
            self.failures.add(1, {"flowengine.spec": flow.spec, "error.type": reason})

    def _remember(self, flow: Flow, context: SpanContext) -> None:
        with self._lock:
            if flow.outcome is not None:
                self._steps.pop(flow.id, None)
                return
            self._steps[flow.id] = context
            self._steps.move_to_end(flow.id)
            while len(self._steps) > _REMEMBERED_FLOWS:
                self._steps.popitem(last=False)

    def _step_of(self, flow_id: str | None) -> SpanContext | None:
        if flow_id is None:
            return None
        with self._lock:
            return self._steps.get(flow_id)

    # --- requests ---------------------------------------------------------------------

    @hookimpl
    def flowengine_request(self, event: RequestEvent) -> None:
        """See ``request``."""
        self.request(event)

    def request(self, event: RequestEvent) -> None:
        """A client span for one attempt, and the counters its outcome moves."""
        parent = self._step_of(event.flow_id)
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent is not None else None
        start = _ns(event.started_at)
        span = self.tracer.start_span(
            f"flowengine.request {event.purpose}",
            context=context,
            kind=SpanKind.CLIENT,
            attributes=_request_attributes(event),
            start_time=start,
        )
        if event.error:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=start + _ns(event.duration))
        self._count(event)

    def _count(self, event: RequestEvent) -> None:
        spec = {"flowengine.spec": event.spec}
        self.durations.record(
            event.duration, {**spec, "http.request.method": event.method, "flowengine.purpose": event.purpose}
        )
        if event.error == "rate_limited" and event.retry_in is not None:
            self.rate_limit_waits.add(1, {**spec, "flowengine.purpose": event.purpose})
        if not event.final:
            return
        result = {**spec, "flowengine.result": event.error or "ok"}
        if event.purpose == "exchange":
            self.exchanges.add(1, result)
            return  # a failed exchange fails its flow: counted there
        if event.purpose == "refresh":
            self.refreshes.add(1, result)
        if event.error:
            self.failures.add(1, {**spec, "error.type": event.error, "flowengine.purpose": event.purpose})


def _request_attributes(event: RequestEvent) -> dict[str, str | int | float]:
    attributes: dict[str, str | int | float] = {
        "flowengine.spec": event.spec,
        "flowengine.purpose": event.purpose,
        "http.request.method": event.method,
        "url.full": event.url,
        "http.request.resend_count": event.attempt - 1,
    }
    if event.flow_id is not None:
        attributes["flowengine.flow.id"] = event.flow_id
    if event.status is not None:
        attributes["http.response.status_code"] = event.status
    if event.error:
        attributes["error.type"] = event.error
    if event.retry_in is not None:
        attributes["flowengine.retry_in"] = event.retry_in
    return attributes
