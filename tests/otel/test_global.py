"""The plugin as installed: it reports to the providers the application sets, in a process of its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.slow
def test_the_entry_point_plugin_reports_to_the_global_providers_once_they_are_set() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        import flowengine as fe
        from flowengine_sandbox.plugin import PodioSandbox
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        async def login(box):
            async with fe.AsyncEngine("podio", client=box.client, endpoints=box.endpoints) as engine:
                flow = await engine.start()
                return await engine.callback(await box.consent(flow.authorization_url, approve=True))

        with PodioSandbox(fe.load_spec("podio")) as box:
            asyncio.run(login(box))  # no provider set yet: nothing is recorded, nothing fails
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            flow = asyncio.run(login(box))
        print(flow.outcome, sorted({span.name for span in exporter.get_finished_spans()}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "granted ['flowengine.request exchange', 'flowengine.step answer', 'flowengine.step callback', "
        "'flowengine.step exchange', 'flowengine.step start']"
    )
