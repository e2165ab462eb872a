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
