"""Recording what flowengine_otel reports: in-memory exporters, a PKCE login, the secrets it used."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import flowengine as fe
from flowengine import _plugins as plugins
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowengine_otel import Telemetry
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


def pkce_variant(podio_spec: fe.FlowSpec) -> fe.FlowSpec:
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


async def login(
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
    return parse_qsl(urlsplit(url).query)
