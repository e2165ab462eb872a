"""flowengine_otel: the spans and counters of a login and a refresh, read from in-memory exporters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flowengine as fe
import pytest
from flowengine import _plugins as plugins
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from flowengine_otel import Telemetry
from flowengine_sandbox.faults import Fault, FaultPlan
from tests.conftest import SandboxFixture

FAST = fe.RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


class Recorded:
    """An engine's plugin manager reporting to in-memory span and metric exporters."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.pm = plugins.new_plugin_manager()
        self.pm.register(Telemetry(self.tracer_provider, MeterProvider(metric_readers=[self.metrics])))

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def counters(self) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
        """Every data point: (metric name, sorted attributes) -> value (a histogram's count)."""
        found: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
        data = self.metrics.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        found[(metric.name, tuple(sorted(point.attributes.items())))] = (
                            value if value is not None else point.count
                        )
        return found


@pytest.fixture
def pkce_spec(podio_spec: fe.FlowSpec) -> fe.FlowSpec:
    """podio.yaml with PKCE (S256), so the run has a verifier the spans must not show."""
    import yaml

    assert podio_spec.source is not None
    with open(podio_spec.source, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    data["pkce"] = True
    data["authorization"]["params"] |= {
        "code_challenge": "{code_challenge}",
        "code_challenge_method": "{code_challenge_method}",
    }
    data["grants"]["authorization_code"]["params"]["code_verifier"] = "{code_verifier}"
    return fe.load_spec(data)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    recorded = Recorded()
    yield recorded
    recorded.tracer_provider.shutdown()


async def _login(
    recorded: Recorded, sandbox: SandboxFixture, podio_spec: fe.FlowSpec, store: str = "memory://"
) -> dict[str, str]:
    """One login inside a span of the test's own; returns every secret it used, by name."""
    tracer = recorded.tracer_provider.get_tracer("test")
    secrets: dict[str, str] = {"client_secret": sandbox.client.client_secret or ""}
    async with fe.AsyncEngine(
        podio_spec,
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        plugin_manager=recorded.pm,
        retry=FAST,
        store=store,
    ) as engine:
        with tracer.start_as_current_span("login"):
            flow = await engine.start()
            stored = await engine.get(flow.id)
            assert stored is not None and stored.code_verifier and flow.authorization_url
            secrets["verifier"] = stored.code_verifier
            secrets["state"] = dict(_query(flow.authorization_url))["state"]
            callback = await sandbox.consent(flow.authorization_url)
            secrets["code"] = dict(_query(callback))["code"]
            flow = await engine.callback(callback)
        assert flow.outcome == "granted" and flow.token_key
        token = await engine.get_token(flow.token_key)
        assert token is not None and token.refresh_token
        secrets |= {
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "authorization": token.authorization_header(),
        }
    return secrets


def _query(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(url).query)


async def test_one_login_is_a_tree_of_step_spans_and_its_exchange_request(
    recorded: Recorded, sandbox: SandboxFixture, pkce_spec: fe.FlowSpec
) -> None:
    await _login(recorded, sandbox, pkce_spec)
    spans = recorded.finished()
    by_id = {span.context.span_id: span for span in spans}
    [login] = [s for s in spans if s.name == "login"]

    def parent(span: ReadableSpan) -> str | None:
        return by_id[span.parent.span_id].name if span.parent is not None else None

    tree = [(s.name, parent(s)) for s in sorted(spans, key=lambda s: s.start_time or 0) if s is not login]
    assert tree == [
        ("flowengine.step start", "login"),
        ("flowengine.step callback", "login"),
        ("flowengine.step exchange", "login"),
        ("flowengine.request exchange", "flowengine.step exchange"),
        ("flowengine.step answer", "login"),
    ]
    assert {s.context.trace_id for s in spans} == {login.context.trace_id}
    steps = [s for s in spans if s.name.startswith("flowengine.step")]
    assert [
        (s.attributes["flowengine.state.before"], s.attributes["flowengine.state.after"]) for s in steps
    ] == [
        ("", "redirected"),
        ("redirected", "authorized"),
        ("authorized", "exchanging"),
        ("exchanging", "exchanged"),
    ]
    assert steps[-1].attributes["flowengine.outcome"] == "granted"
    assert all(s.attributes["flowengine.spec"] == "podio" for s in steps)
    [request] = [s for s in spans if s.name == "flowengine.request exchange"]
    assert request.kind is SpanKind.CLIENT
    assert dict(request.attributes or {}) == {
        "flowengine.spec": "podio",
        "flowengine.purpose": "exchange",
        "flowengine.flow.id": steps[0].attributes["flowengine.flow.id"],
        "http.request.method": "POST",
        "url.full": sandbox.endpoints["token"],
        "http.request.resend_count": 0,
        "http.response.status_code": 200,
    }
    assert (request.end_time or 0) > (request.start_time or 0)
    assert (
        recorded.counters()[
            ("flowengine.exchanges", (("flowengine.result", "ok"), ("flowengine.spec", "podio")))
        ]
        == 1
    )


async def test_sec13_no_span_or_metric_attribute_holds_a_secret_of_the_run(
    recorded: Recorded, sandbox: SandboxFixture, pkce_spec: fe.FlowSpec
) -> None:
    secrets = await _login(recorded, sandbox, pkce_spec)
    assert all(len(value) >= 8 for value in secrets.values()), secrets.keys()
    values: list[str] = []
    for span in recorded.finished():
        values += [span.name, *(str(v) for v in (span.attributes or {}).values())]
        values += [str(v) for event in span.events for v in (event.attributes or {}).values()]
    values += [str(v) for _, attributes in recorded.counters() for _, v in attributes]
    assert len(values) > 30, "the run was recorded"
    leaks = {name for name, secret in secrets.items() for value in values if secret in value}
    assert not leaks, f"span or metric attributes hold: {sorted(leaks)}"


async def test_retries_failures_and_rate_limit_waits_are_counted(
    recorded: Recorded, sandbox: SandboxFixture, pkce_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'tokens.db'}"
    await _login(recorded, sandbox, pkce_spec, store)
    sandbox.settings.faults = FaultPlan(
        [Fault("rate_limit", times=1, retry_after=0), Fault("status", times=1)]
    )
    async with fe.AsyncEngine(
        pkce_spec,
        client=sandbox.client,
        endpoints=sandbox.endpoints,
        plugin_manager=recorded.pm,
        retry=FAST,
        store=store,
    ) as engine:
        [token] = await engine.tokens()
        await engine.refresh(token)  # 420, then 503, then refreshed
        sandbox.settings.faults = FaultPlan([Fault("status", status=400, body=None)])
        with pytest.raises(fe.ProviderError):
            await engine.refresh(token.key)
    requests = [s for s in recorded.finished() if s.name == "flowengine.request refresh"]
    seen = [
        (s.attributes["http.request.resend_count"], s.attributes.get("http.response.status_code"),
         s.attributes.get("error.type"))
        for s in requests
    ]  # fmt: skip
    assert seen == [
        (0, 420, "rate_limited"), (1, 503, "provider_unavailable"), (2, 200, None), (0, 400, "provider_error")
    ]  # fmt: skip
    assert [s.status.status_code for s in requests] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET,
                                                        StatusCode.ERROR]  # fmt: skip
    counters = recorded.counters()
    spec = ("flowengine.spec", "podio")
    assert counters[("flowengine.refreshes", (("flowengine.result", "ok"), spec))] == 1
    assert counters[("flowengine.rate_limit_waits", (("flowengine.purpose", "refresh"), spec))] == 1
    failed = [(k, v) for k, v in counters.items() if k[0] == "flowengine.failures"]
    assert failed == [
        (
            (
                "flowengine.failures",
                (("error.type", "provider_error"), ("flowengine.purpose", "refresh"), spec),
            ),
            1,
        )
    ]


async def test_a_denied_login_counts_a_failure_by_its_code(
    recorded: Recorded, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, plugin_manager=recorded.pm
    ) as engine:
        flow = await engine.start()
        flow = await engine.callback(await sandbox.consent(flow.authorization_url, approve=False))
    assert flow.outcome == "denied"
    [step] = [s for s in recorded.finished() if s.name == "flowengine.step callback"]
    assert step.attributes["error.type"] == "access_denied"
    assert step.status.status_code is StatusCode.ERROR
    assert (
        recorded.counters()[
            ("flowengine.failures", (("error.type", "access_denied"), ("flowengine.spec", "podio")))
        ]
        == 1
    )
