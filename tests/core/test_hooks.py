"""Every hook: a test named after it here, and an entry in docs/plugins.md (checked below)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import flowengine as fe
import pytest
from click.testing import CliRunner
from flowengine import TransitionContext, hookspecs
from flowengine import _plugins as plugins
from flowengine._machine import compile_flow

from flowengine_memory import MemoryStore
from tests.conftest import SandboxFixture

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(
    name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("flowengine_")
)


def test_every_hook_has_a_test_and_a_docs_entry() -> None:
    tests = {name for name, _ in inspect.getmembers(__import__(__name__, fromlist=["*"]), inspect.isfunction)}
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        assert f"test_{hook}" in tests, f"hook {hook} has no test named test_{hook}"
        assert re.search(rf"^#+ `{hook}`", docs, re.M), f"hook {hook} has no heading in docs/plugins.md"
        assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"hook {hook} has no docstring"


def test_flowengine_store() -> None:
    store = plugins.open_store("memory://")
    assert isinstance(store, MemoryStore)
    assert isinstance(store, fe.Store)
    with pytest.raises(fe.PluginError) as caught:
        plugins.open_store("nosuch://x")
    assert caught.value.code == "store_unsupported"


def test_flowengine_transport() -> None:
    transport = plugins.open_transport(fe.TransportConfig(timeout=3))
    assert isinstance(transport, fe.Transport)
    empty = plugins.new_plugin_manager(load_entry_points=False)
    with pytest.raises(fe.PluginError):
        plugins.open_transport(fe.TransportConfig(), empty)


class _Extras:
    """A plugin contributing a guard and an action by name."""

    @fe.hookimpl
    def flowengine_guards(self) -> Mapping[str, Any]:
        return {"scope_is_read_only": lambda ctx: (ctx.flow.scope or "").endswith(":read")}

    @fe.hookimpl
    def flowengine_actions(self) -> Mapping[str, Any]:
        def tag(ctx: TransitionContext) -> None:
            ctx.record_account(fe.AccountRef("tagged", 1))

        return {"tag_scope": tag}


def _spec_with(podio_spec: fe.FlowSpec, when: tuple[str, ...], do: tuple[str, ...]) -> fe.FlowSpec:
    import attrs

    transitions = list(podio_spec.machine.transitions)
    transitions[0] = attrs.evolve(
        transitions[0], when=(*transitions[0].when, *when), do=(*transitions[0].do, *do)
    )
    machine = attrs.evolve(podio_spec.machine, transitions=tuple(transitions))
    return fe.load_spec(attrs.evolve(podio_spec, machine=machine))


async def test_flowengine_guards(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    spec = _spec_with(podio_spec, ("scope_is_read_only",), ())
    with pytest.raises(fe.SpecError, match=r"when\[1\]: unknown guard 'scope_is_read_only'"):
        compile_flow(spec)
    pm = plugins.new_plugin_manager()
    pm.register(_Extras())
    async with fe.AsyncEngine(
        spec, client=sandbox.client, endpoints=sandbox.endpoints, plugin_manager=pm
    ) as engine:
        read = await engine.start(scope="user:read")
        assert (await engine.callback(await sandbox.consent(read.authorization_url))).state == "exchanged"
        write = await engine.start(scope="user:write")
        assert (await engine.callback(await sandbox.consent(write.authorization_url))).state == "failed"


async def test_flowengine_actions(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    spec = _spec_with(podio_spec, (), ("tag_scope",))
    with pytest.raises(fe.SpecError, match=r"do\[1\]: unknown action 'tag_scope'"):
        compile_flow(spec)
    pm = plugins.new_plugin_manager()
    pm.register(_Extras())
    async with fe.AsyncEngine(
        spec, client=sandbox.client, endpoints=sandbox.endpoints, plugin_manager=pm, auto_exchange=False
    ) as engine:
        flow = await engine.start()
        assert (
            await engine.callback(await sandbox.consent(flow.authorization_url))
        ).account == fe.AccountRef("tagged", 1)


def test_actions_cannot_rewrite_what_binds_a_flow(podio_spec: fe.FlowSpec) -> None:
    """An action changes a flow only through TransitionContext's methods: never its id, client or state."""
    flow = fe.Flow(
        id="f",
        spec="podio",
        state="redirected",
        created_at=0,
        expires_at=1,
        client_id="c",
        redirect_uri="https://x.example/cb",
        state_hash="h",
    )
    ctx = TransitionContext(podio_spec, flow, "callback")
    with pytest.raises(TypeError):
        ctx.changes["client_id"] = "someone-else"  # type: ignore[index]
    with pytest.raises(AttributeError):
        ctx.flow_state = "exchanged"  # type: ignore[attr-defined]
    ctx.forget_secrets()
    assert set(ctx.changes) == {"code", "code_verifier"}


async def test_flowengine_transition(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    seen: list[tuple[str, str, str]] = []

    class Observer:
        @fe.hookimpl
        def flowengine_transition(self, flow: fe.Flow, event: str, source: str, dest: str) -> None:
            assert flow.code is None and flow.code_verifier is None
            seen.append((event, source, dest))

    pm = plugins.new_plugin_manager()
    pm.register(Observer())
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, plugin_manager=pm
    ) as engine:
        flow = await engine.start()
        await engine.callback(await sandbox.consent(flow.authorization_url, approve=False))
    assert seen == [("start", "", "redirected"), ("callback", "redirected", "denied")]


async def test_flowengine_present(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    shown: list[tuple[str, dict[str, Any]]] = []

    class Presenter:
        @fe.hookimpl
        def flowengine_present(self, flow: fe.Flow, step: str, detail: Mapping[str, Any]) -> bool:
            shown.append((step, dict(detail)))
            return True

    pm = plugins.new_plugin_manager(load_entry_points=False)
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, store=MemoryStore(), endpoints=sandbox.endpoints, plugin_manager=pm
    ) as engine:
        flow = await engine.start()
        assert engine.present(flow, "authorize", url="x") is False  # nobody presents
        pm.register(Presenter())
        assert engine.present(flow, "authorize", url="x") is True
    assert shown == [("authorize", {"url": "x"})]


def test_flowengine_commands() -> None:
    @click.group()
    def root() -> None:
        """Test root."""

    class Commands:
        @fe.hookimpl
        def flowengine_commands(self, cli: click.Group) -> None:
            @cli.command()
            def hello() -> None:
                click.echo("hello from a plugin")

    pm = plugins.new_plugin_manager()
    pm.register(Commands())
    pm.hook.flowengine_commands(cli=root)
    assert {"login", "sandbox", "hello"} <= set(root.commands)
    assert CliRunner().invoke(root, ["hello"]).output == "hello from a plugin\n"


def test_flowengine_spec_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (ROOT / "specs") in [p.resolve() for p in plugins.spec_paths()]
    source = (ROOT / "specs" / "podio.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(source.replace("name: podio", "name: mine"))
    monkeypatch.setenv("FLOWENGINE_SPEC_PATH", str(tmp_path))
    assert fe.load_spec("mine").name == "mine"
    with pytest.raises(fe.PluginError) as caught:
        fe.load_spec("nosuch")
    assert caught.value.code == "spec_not_found"


async def test_flowengine_sandbox(podio_spec: fe.FlowSpec) -> None:
    sandbox = plugins.open_sandbox(podio_spec)
    with sandbox:
        assert set(sandbox.endpoints) == set(podio_spec.endpoints)
        assert all(url.startswith(sandbox.url) for url in sandbox.endpoints.values())
        async with fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints) as engine:
            flow = await engine.start()
            assert (
                await engine.callback(await sandbox.consent(flow.authorization_url or "", approve=True))
            ).state == "exchanged"
    other = fe.load_spec(
        (ROOT / "specs" / "podio.yaml")
        .read_text()
        .replace("podio.com", "example.com")
        .replace("name: podio", "name: x")
    )
    # Any other spec is emulated from the spec itself, under /_e/SPEC/ENDPOINT/HOST/PATH.
    with plugins.open_sandbox(other) as emulated:
        assert emulated.endpoints["token"] == f"{emulated.url}/_e/x/token/api.example.com/oauth/token/v2"
        async with fe.AsyncEngine(other, client=emulated.client, endpoints=emulated.endpoints) as engine:
            flow = await engine.start()
            callback = await emulated.consent(flow.authorization_url or "", approve=True)
            assert (await engine.callback(callback)).state == "exchanged"
    pm = fe.new_plugin_manager(load_entry_points=False)  # no sandbox plugin: nothing emulates anything
    with pytest.raises(fe.PluginError) as caught:
        plugins.open_sandbox(other, pm=pm)
    assert caught.value.code == "sandbox_unsupported"


async def test_flowengine_request(sandbox: SandboxFixture, podio_spec: fe.FlowSpec) -> None:
    from flowengine_sandbox.faults import Fault, FaultPlan

    seen: list[fe.RequestEvent] = []

    class Observer:
        @fe.hookimpl
        def flowengine_request(self, event: fe.RequestEvent) -> None:
            seen.append(event)

    class Broken:
        @fe.hookimpl
        def flowengine_request(self, event: fe.RequestEvent) -> None:
            raise RuntimeError("an observer's own bug")

    pm = plugins.new_plugin_manager()
    pm.register(Observer())
    pm.register(Broken())
    retry = fe.RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, plugin_manager=pm, retry=retry
    ) as engine:
        flow = await engine.start()
        flow = await engine.callback(await sandbox.consent(flow.authorization_url))
        assert flow.outcome == "granted", "a failing observer changes nothing"
        sandbox.settings.faults = FaultPlan([Fault("status", times=1)])
        assert flow.token_key is not None
        await engine.refresh(flow.token_key)
    token_url = sandbox.endpoints["token"]
    assert [(e.purpose, e.attempt, e.status, e.error, e.final) for e in seen] == [
        ("exchange", 1, 200, None, True),
        ("refresh", 1, 503, "provider_unavailable", False),
        ("refresh", 2, 200, None, True),
    ]
    assert {(e.spec, e.method, e.url) for e in seen} == {("podio", "POST", token_url)}
    assert seen[0].flow_id == flow.id and seen[1].flow_id is None
    assert seen[1].retry_in is not None and 0 <= seen[1].retry_in <= 0.01
    assert all(e.duration >= 0 and e.started_at > 0 for e in seen)


def test_request_events_show_no_query_and_no_user_info() -> None:
    event = fe.RequestEvent(
        spec="s",
        purpose="refresh",
        method="POST",
        url="https://user:pw@example.com:8443/oauth/token?code=secret#frag",
        attempt=1,
        started_at=0.0,
        duration=0.0,
    )
    assert event.url == "https://example.com:8443/oauth/token"


def test_flowengine_refresh_queue(tmp_path: Path) -> None:
    import asyncio
    import time

    from flowengine.cli import cli

    store_url = f"sqlite:///{tmp_path / 'tokens.db'}"
    now = time.time()

    def token(app: int, expires_in: float, *, dead: bool = False) -> fe.Token:
        account = fe.AccountRef("app", app)
        return fe.Token("podio-app", account, f"access-{app}", "bearer", now, now + expires_in,
                        refresh_token=f"refresh-{app}", client_id="c", dead=dead)  # fmt: skip

    async def seed() -> list[fe.Token]:
        tokens = [token(1, 600), token(2, 60), token(3, 7200), token(4, 60, dead=True)]
        store = plugins.open_store(store_url)
        for each in tokens:
            await store.put_token(each)
        await store.aclose()
        return tokens

    tokens = asyncio.run(seed())
    received: list[tuple[list[fe.RefreshOrder], str, fe.RateLimit | None]] = []

    class Queue:
        def enqueue_refreshes(
            self,
            orders: list[fe.RefreshOrder],
            *,
            store: str,
            account_limit: fe.RateLimit | None,
            client_limit: fe.RateLimit | None,
        ) -> fe.Enqueued:
            received.append((list(orders), store, account_limit))
            return fe.Enqueued(queued=len(orders), skipped=0, span=90.0, destination="the test's queue")

    class Queues:
        @fe.hookimpl
        def flowengine_refresh_queue(self, via: str) -> Queue | None:
            return Queue() if via == "test" else None

    assert isinstance(Queue(), fe.RefreshQueue)
    pm = plugins.get_plugin_manager()
    pm.hook.flowengine_commands(cli=cli)
    queues = Queues()
    pm.register(queues)
    try:
        args = ["batch", "refresh", "--expiring-within", "1h", "--store", store_url, "--rate-limit", "5/1s"]
        done = CliRunner().invoke(cli, [*args, "--via", "test"])
        unknown = CliRunner().invoke(cli, [*args, "--via", "carrier-pigeon"])
    finally:
        pm.unregister(queues)
    assert done.exit_code == 0, done.output
    assert "2 token(s) queued via test, 0 already queued; due over 1m30s (the test's queue)" in done.output
    [(orders, store, limit)] = received
    assert [(o.spec, o.token_key, o.fingerprint, o.account) for o in orders] == [
        ("podio-app", t.key, t.fingerprint, str(t.account)) for t in (tokens[1], tokens[0])
    ], "the live tokens expiring within the hour, soonest first; never a token itself"
    assert (store, limit) == (store_url, fe.RateLimit(5, 1))
    assert unknown.exit_code == 2
    assert "queue_unsupported" in unknown.output
