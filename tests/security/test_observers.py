"""SECURITY.md 13 for what observes the engine from outside: telemetry and a fleet's messages.

Spans and metrics (flowengine_otel) and Celery messages (flowengine_celery) leave
the process for systems that other people read: a tracing backend, a broker.
Each is run for real and every value it holds is searched for the run's secrets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import flowengine as fe
import pytest

from tests.conftest import SandboxFixture
from tests.otel.recording import Recorded, login, pkce_variant


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    recorded = Recorded()
    yield recorded
    recorded.tracer_provider.shutdown()


async def test_sec13_no_span_or_metric_attribute_holds_a_secret_of_the_run(
    recorded: Recorded, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    secrets = await login(recorded, sandbox, pkce_variant(podio_spec))
    assert all(len(value) >= 8 for value in secrets.values()), secrets.keys()
    values: list[str] = []
    for span in recorded.finished():
        values += [span.name, *(str(v) for v in (span.attributes or {}).values())]
        values += [str(v) for event in span.events for v in (event.attributes or {}).values()]
    values += [str(v) for _, attributes in recorded.counters() for _, v in attributes]
    assert len(values) > 30, "the run was recorded"
    leaks = {name for name, secret in secrets.items() for value in values if secret in value}
    assert not leaks, f"span or metric attributes hold: {sorted(leaks)}"


async def test_sec13_a_fleets_messages_carry_names_never_a_secret(
    sandbox: SandboxFixture, tmp_path: Path
) -> None:
    """What ``keep_fresh`` and ``batch refresh --via celery`` put on the broker: spec, key, fingerprint."""
    from flowengine_celery import FleetSettings, create_app
    from flowengine_celery._queue import publish

    store = f"sqlite:///{tmp_path / 'tokens.db'}"
    async with fe.AsyncEngine(
        "podio", client=sandbox.client, endpoints=sandbox.endpoints, store=store
    ) as engine:
        flow = await engine.start()
        flow = await engine.callback(await sandbox.consent(flow.authorization_url))
        assert flow.token_key is not None
        token = await engine.get_token(flow.token_key)
    assert token is not None and token.refresh_token
    password = "store-pass-w0rd"
    settings = FleetSettings.from_env({
        "FLOWENGINE_STORE": f"postgresql://fleet:{password}@127.0.0.1:5432/test",
        "FLOWENGINE_CELERY_BROKER": "memory://", "FLOWENGINE_CELERY_QUEUE": f"sec13-{tmp_path.name}",
    })  # fmt: skip
    app = create_app(settings)
    order = fe.RefreshOrder(
        "podio", token.key, token.fingerprint, str(token.account), sandbox.client.client_id
    )
    publish(app, settings, [(order, 0.0), (order, 30.0)])
    raw: list[str] = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(settings.queue)
        for _ in range(2):
            message = queue.get(timeout=5)
            raw += [repr(message.body), repr(message.headers), repr(message.properties)]
            message.ack()
        queue.close()
    app.close()
    text = "\n".join(raw)
    assert token.key in text and token.fingerprint in text, "the message names the token"
    secrets = {
        "access_token": token.access_token,
        "refresh_token": token.refresh_token,
        "client_secret": sandbox.client.client_secret or "",
        "store password": password,
    }
    assert not [name for name, secret in secrets.items() if secret in text]
