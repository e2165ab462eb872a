"""FlowSpec -> CompiledFlow: one ``transitions`` Machine per spec, built once.

Flows are records, not models attached to the machine: ``add_model`` keeps a
list and costs linear time per model. Nor is a flow moved by ``transitions``'
trigger machinery, which costs several microseconds a step (event objects,
callback resolution, debug logging) for what is a table lookup here. The
Machine is built once and stays the one statement of what may happen; its
transitions are read back into a table of (state, trigger) -> edges, and
``fire`` walks that table as ``transitions`` would: the first edge whose guards
all pass, in declaration order, then its actions in order. Guards and actions
see a ``TransitionContext``; actions only record changes on it, the engine
turns them into a new record and stores it with compare-and-set.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from transitions import Machine

from flowengine._errors import FlowError, FlowStateError, SpecError
from flowengine._records import ErrorInfo, Flow, Token
from flowengine._spec import FlowSpec, check_names

__all__ = [
    "BUILTIN_ACTIONS",
    "BUILTIN_GUARDS",
    "Action",
    "CallbackParams",
    "CompiledFlow",
    "Guard",
    "TransitionContext",
    "compile_flow",
]


@attrs.frozen(slots=True)
class CallbackParams:
    """The parameters of a callback that matter, read per the spec's callback rules."""

    state: str | None = attrs.field(default=None, repr=False)
    code: str | None = attrs.field(default=None, repr=False)
    error: str | None = None
    error_reason: str | None = None
    error_description: str | None = None
    iss: str | None = None


@attrs.define(slots=True)
class TransitionContext:
    """What guards read and actions write during one transition."""

    spec: FlowSpec
    flow: Flow
    event: str
    params: CallbackParams | None = None
    token: Token | None = None
    error: FlowError | None = None
    changes: dict[str, Any] = attrs.field(factory=dict)
    save_token: bool = False


Guard = Callable[[TransitionContext], bool]
Action = Callable[[TransitionContext], None]


def _code_present(ctx: TransitionContext) -> bool:
    return ctx.params is not None and bool(ctx.params.code) and not ctx.params.error


def _error_is_denial(ctx: TransitionContext) -> bool:
    return ctx.error is not None and ctx.error.code == "access_denied"


def _record_code(ctx: TransitionContext) -> None:
    assert ctx.params is not None
    ctx.changes["code"] = ctx.params.code


def _record_error(ctx: TransitionContext) -> None:
    if ctx.error is not None:
        ctx.changes["error"] = ErrorInfo.from_error(ctx.error)


def _record_token(ctx: TransitionContext) -> None:
    token = ctx.token
    assert token is not None
    ctx.changes.update(
        account=token.account,
        token_key=token.key,
        token_fingerprint=token.fingerprint,
        granted_scope=token.scope,
        error=None,
    )


def _save_token(ctx: TransitionContext) -> None:
    ctx.save_token = True


def _forget_secrets(ctx: TransitionContext) -> None:
    ctx.changes.update(code=None, code_verifier=None)


BUILTIN_GUARDS: Mapping[str, Guard] = {
    "code_present": _code_present,
    "error_is_denial": _error_is_denial,
    "error_present": lambda ctx: ctx.error is not None,
    "token_received": lambda ctx: ctx.token is not None,
    "pkce_enabled": lambda ctx: ctx.spec.pkce,
}

BUILTIN_ACTIONS: Mapping[str, Action] = {
    "record_code": _record_code,
    "record_error": _record_error,
    "record_token": _record_token,
    "save_token": _save_token,
    "forget_secrets": _forget_secrets,
}


@attrs.frozen(slots=True)
class _Edge:
    """One transition as ``fire`` runs it: guards to pass, then actions, to ``dest``."""

    guards: tuple[Guard, ...]
    actions: tuple[Action, ...]
    dest: str


class CompiledFlow:
    """A spec compiled into a machine; ``fire`` moves a flow one step."""

    def __init__(self, spec: FlowSpec, guards: Mapping[str, Guard], actions: Mapping[str, Action]):
        self.spec = spec
        machine = spec.machine
        self.final = frozenset(machine.final if machine else ())
        self.states = tuple(machine.states if machine else ())
        self.triggers = frozenset(t.trigger for t in machine.transitions) if machine else frozenset()
        #: (state, trigger) -> the edges that trigger may take from that state, in order.
        self._edges: dict[tuple[str, str], tuple[_Edge, ...]] = {}
        #: None for a grant-only spec: it has no flows to move.
        self.machine: Machine | None = None
        if machine is None:
            return
        # No model: flows are never attached (see the module docstring).
        self.machine = Machine(
            model=None,
            states=list(machine.states),
            initial=machine.initial,
            auto_transitions=False,
            send_event=True,
        )
        for t in machine.transitions:
            sources: Any = "*" if "*" in t.source else list(t.source)
            self.machine.add_transition(
                t.trigger,
                sources,
                t.dest,
                conditions=[_as_condition(name, guards[name]) for name in t.when],
                after=[_as_callback(actions[name]) for name in t.do],
            )
        self._edges = _edge_table(self.machine)

    def is_final(self, flow: Flow) -> bool:
        """True when the flow has reached one of the spec's final states."""
        return flow.state in self.final

    def can_fire(self, state: str, event: str) -> bool:
        """True when some transition on ``event`` leaves ``state``."""
        return (state, event) in self._edges

    def fire(self, ctx: TransitionContext) -> str:
        """Run the first transition on ``ctx.event`` whose guards pass; return its dest."""
        if self.machine is None:
            raise FlowStateError(f"spec {self.spec.name!r} has no machine", flow_id=ctx.flow.id)
        for edge in self._edges.get((ctx.flow.state, ctx.event), ()):
            if all(guard(ctx) for guard in edge.guards):
                for action in edge.actions:
                    action(ctx)
                return edge.dest
        raise FlowStateError(
            f"no transition on {ctx.event!r} applies to a flow in state {ctx.flow.state!r}",
            flow_id=ctx.flow.id,
        )

    def edges(self) -> Iterable[tuple[str, str, str, tuple[str, ...]]]:
        """Every edge of the compiled machine as (source, dest, trigger, guard names)."""
        if self.machine is None:
            return
        for trigger, event in self.machine.events.items():
            for source, transitions in event.transitions.items():
                for transition in transitions:
                    names = tuple(str(getattr(c.func, "guard_name", "?")) for c in transition.conditions)
                    yield source, str(transition.dest), trigger, names


def _as_condition(name: str, guard: Guard) -> Callable[[Any], bool]:
    def condition(event: Any) -> bool:
        return bool(guard(event.kwargs["ctx"]))

    condition.guard_name = name  # type: ignore[attr-defined]
    condition.guard = guard  # type: ignore[attr-defined]
    return condition


def _as_callback(action: Action) -> Callable[[Any], None]:
    def callback(event: Any) -> None:
        action(event.kwargs["ctx"])

    callback.action = action  # type: ignore[attr-defined]
    return callback


def _wrapped(wrapper: object, kind: str) -> Any:
    """The guard or action a condition/callback wrapper made by this module calls."""
    return vars(wrapper)[kind]


def _edge_table(machine: Machine) -> dict[tuple[str, str], tuple[_Edge, ...]]:
    """The machine's transitions as (state, trigger) -> edges, in the order it would try them.

    Read back from the built Machine (not the spec), so that ``fire`` takes
    exactly the transitions ``transitions`` would, ``"*"`` sources expanded.
    """
    table: dict[tuple[str, str], tuple[_Edge, ...]] = {}
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            edges = []
            for transition in transitions:
                if any(not condition.target for condition in transition.conditions):
                    raise AssertionError("compiled machines have no `unless` conditions")  # pragma: no cover
                edges.append(
                    _Edge(
                        guards=tuple(_wrapped(cond.func, "guard") for cond in transition.conditions),
                        actions=tuple(_wrapped(callback, "action") for callback in transition.after),
                        dest=str(transition.dest),
                    )
                )
            if edges:
                table[(source, trigger)] = tuple(edges)
    return table


#: The last compilation of each spec, with the guards and actions it was compiled with.
_compiled: weakref.WeakKeyDictionary[FlowSpec, tuple[dict[str, Guard], dict[str, Action], CompiledFlow]] = (
    weakref.WeakKeyDictionary()
)


def compile_flow(
    spec: FlowSpec,
    *,
    guards: Mapping[str, Guard] | None = None,
    actions: Mapping[str, Action] | None = None,
) -> CompiledFlow:
    """Compile a spec; unknown guard or action names are ``spec_invalid`` with their path.

    ``guards``/``actions`` default to the built-ins plus what plugins contribute.
    A spec compiled again with the same guards and actions gets the same
    CompiledFlow (it holds no per-flow state, so any number of engines and
    threads share it): building the Machine is the dear part of compiling.
    """
    if guards is None or actions is None:
        from flowengine._plugins import plugin_actions, plugin_guards

        guards = {**BUILTIN_GUARDS, **plugin_guards()} if guards is None else guards
        actions = {**BUILTIN_ACTIONS, **plugin_actions()} if actions is None else actions
    cached = _compiled.get(spec)
    if cached is not None and cached[0] == guards and cached[1] == actions:
        return cached[2]
    problems = check_names(spec, guards, actions)
    if problems:
        raise SpecError(problems)
    compiled = CompiledFlow(spec, guards, actions)
    _compiled[spec] = (dict(guards), dict(actions), compiled)
    return compiled


def render_graph(compiled: CompiledFlow, fmt: str = "mermaid") -> str:
    """The compiled machine as Mermaid ``stateDiagram-v2`` or Graphviz DOT text."""
    spec = compiled.spec
    machine = spec.machine
    if machine is None:
        raise ValueError(f"spec {spec.name!r} is grant-only: it has no machine to draw")
    lines: list[str]
    if fmt == "mermaid":
        lines = ["stateDiagram-v2", f"    [*] --> {machine.initial}"]
        for source, dest, trigger, guards in compiled.edges():
            label = trigger + (f" [{' and '.join(guards)}]" if guards else "")
            lines.append(f"    {source} --> {dest}: {label}")
        lines += [f"    {state} --> [*]" for state in machine.final]
    elif fmt == "dot":
        lines = [f'digraph "{spec.name}" {{', "    rankdir=LR;", "    node [shape=box, style=rounded];"]
        lines += [f'    "{state}" [shape=doublecircle];' for state in machine.final]
        lines.append(f'    "__start" [shape=point]; "__start" -> "{machine.initial}";')
        for source, dest, trigger, guards in compiled.edges():
            label = trigger + (f"\\n[{' and '.join(guards)}]" if guards else "")
            lines.append(f'    "{source}" -> "{dest}" [label="{label}"];')
        lines.append("}")
    else:
        raise ValueError(f"unknown graph format {fmt!r} (mermaid or dot)")
    return "\n".join(lines) + "\n"
