"""flowengine_otel: the spans and counters of a login and a refresh, read from in-memory exporters."""

from __future__ import annotations

from pathlib import Path

import flowengine as fe
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from flowengine_sandbox.faults import Fault, FaultPlan
from tests.conftest import SandboxFixture
from tests.otel.recording import FAST, Recorded, login


async def test_one_login_is_a_tree_of_step_spans_and_its_exchange_request(
    recorded: Recorded, sandbox: SandboxFixture, pkce_spec: fe.FlowSpec
) -> None:
    await login(recorded, sandbox, pkce_spec)
    spans = recorded.finished()
    by_id = {span.context.span_id: span for span in spans}
    [outer] = [s for s in spans if s.name == "login"]

    def parent(span: ReadableSpan) -> str | None:
        return by_id[span.parent.span_id].name if span.parent is not None else None

    tree = [(s.name, parent(s)) for s in sorted(spans, key=lambda s: s.start_time or 0) if s is not outer]
    assert tree == [
        ("flowengine.step start", "login"),
        ("flowengine.step callback", "login"),
        ("flowengine.step exchange", "login"),
        ("flowengine.request exchange", "flowengine.step exchange"),
        ("flowengine.step answer", "login"),
    ]
    assert {s.context.trace_id for s in spans} == {outer.context.trace_id}
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


async def test_retries_failures_and_rate_limit_waits_are_counted(
    recorded: Recorded, sandbox: SandboxFixture, pkce_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'tokens.db'}"
    await login(recorded, sandbox, pkce_spec, store)
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
