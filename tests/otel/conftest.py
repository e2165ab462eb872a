"""Fixtures of the OpenTelemetry tests: in-memory exporters, and a spec with PKCE."""

from __future__ import annotations

from collections.abc import Iterator

import flowengine as fe
import pytest

from tests.otel.recording import Recorded, pkce_variant


@pytest.fixture
def pkce_spec(podio_spec: fe.FlowSpec) -> fe.FlowSpec:
    return pkce_variant(podio_spec)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    recorded = Recorded()
    yield recorded
    recorded.tracer_provider.shutdown()
