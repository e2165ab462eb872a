"""FlowSpec -> CompiledFlow: one ``transitions`` Machine per spec, and the table that runs it.

The Machine is built once per spec and is the statement of what may happen:
its states, its final states, and for each trigger the transitions in the order
``transitions`` tries them, with the spec's guards as conditions and its actions
as ``after`` callbacks. Running a flow through ``transitions``' own trigger
costs about 11 µs a step on a light per-step model (``benchmarks/engine_cost.py``
measures it), above the 10 µs budget a step has; so ``fire`` walks a table read
back from the built Machine: the first edge whose guards all pass, in order,
then its actions in order. ``fire_with_transitions`` runs the very same step
through ``transitions`` itself, and a differential test proves, over every
shipped and example spec and every state, trigger and guard outcome, that the two
agree.

Guards read a ``TransitionContext``; actions change a flow only through its
typed methods, which can never touch a flow's id, client, state or ``state_hash``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
from transitions import Machine, MachineError

from flowengine._callbacks import CallbackParams
from flowengine._errors import ErrorCode, FlowError, FlowStateError, SpecError, StoreError
from flowengine._records import AccountRef, ErrorInfo, Flow, Outcome, Token, evolve
from flowengine._spec import FlowSpec, MachineSpec
from flowengine._spec_check import check_names

__all__ = [
    "BUILTIN_ACTIONS",
    "BUILTIN_GUARDS",
    "Action",
    "CallbackParams",
    "CompiledFlow",
    "Guard",
    "TransitionContext",
    "compile_flow",
    "settle",
]


class TransitionContext:
    """What guards read and actions write during one transition.

    Guards read ``spec``, ``flow``, ``event``, ``params``, ``token`` and ``error``.
    Actions record changes only through the methods below; ``changes`` is the
    read-only result the engine applies to the flow. There is no way to rewrite
    a flow's id, client, ``state_hash`` or machine state from an action.
    """

    __slots__ = ("_changes", "error", "event", "flow", "params", "save_token", "spec", "token")

    def __init__(
        self,
        spec: FlowSpec,
        flow: Flow,
        event: str,
        *,
        params: CallbackParams | None = None,
        token: Token | None = None,
        error: FlowError | None = None,
    ) -> None:
        self.spec = spec
        self.flow = flow
        self.event = event
        self.params = params
        self.token = token
        self.error = error
        #: Set by the ``save_token`` action: the engine stores ``token`` before the flow moves.
        self.save_token = False
        self._changes: dict[str, Any] = {}

    @property
    def changes(self) -> Mapping[str, Any]:
        """The changes actions recorded, by flow field (read-only)."""
        return MappingProxyType(self._changes)

    def record_code(self, code: str) -> None:
        """Keep the authorization code on the flow until it is exchanged."""
        self._changes["code"] = code

    def record_error(self, error: ErrorInfo | None) -> None:
        """Say why the flow failed or was denied (None clears it)."""
        self._changes["error"] = error

    def record_account(self, account: AccountRef | None) -> None:
        """Name the account the flow's token acts for."""
        self._changes["account"] = account

    def record_token(self, token: Token) -> None:
        """Point the flow at the token it obtained: key, fingerprint, account, granted scope, claims."""
        self._changes.update(
            account=token.account,
            token_key=token.key,
            token_fingerprint=token.fingerprint,
            granted_scope=token.scope,
            error=None,
            claims=dict(token.claims),
        )

    def forget_secrets(self) -> None:
        """Drop the code, the PKCE verifier and a device code: nothing may send them again."""
        self._changes.update(code=None, code_verifier=None)
        if self.flow.device is not None and self.flow.device.device_code is not None:
            self._changes["device"] = evolve(self.flow.device, device_code=None)


Guard = Callable[[TransitionContext], bool]
Action = Callable[[TransitionContext], None]


def _code_present(ctx: TransitionContext) -> bool:
    return ctx.params is not None and bool(ctx.params.code) and not ctx.params.error


def _error_is_denial(ctx: TransitionContext) -> bool:
    return ctx.error is not None and ctx.error.code == ErrorCode.ACCESS_DENIED


def _record_code(ctx: TransitionContext) -> None:
    if ctx.params is None or not ctx.params.code:
        raise FlowStateError("record_code needs a callback with a code", flow_id=ctx.flow.id)
    ctx.record_code(ctx.params.code)


def _record_error(ctx: TransitionContext) -> None:
    if ctx.error is not None:
        ctx.record_error(ErrorInfo.from_error(ctx.error))


def _record_token(ctx: TransitionContext) -> None:
    if ctx.token is None:
        raise FlowStateError("record_token needs a token", flow_id=ctx.flow.id)
    ctx.record_token(ctx.token)


def _save_token(ctx: TransitionContext) -> None:
    ctx.save_token = True


BUILTIN_GUARDS: Mapping[str, Guard] = MappingProxyType(
    {
        "code_present": _code_present,
        "error_is_denial": _error_is_denial,
        "error_present": lambda ctx: ctx.error is not None,
        "token_received": lambda ctx: ctx.token is not None,
        "pkce_enabled": lambda ctx: ctx.spec.pkce,
    }
)

BUILTIN_ACTIONS: Mapping[str, Action] = MappingProxyType(
    {
        "record_code": _record_code,
        "record_error": _record_error,
        "record_token": _record_token,
        "save_token": _save_token,
        "forget_secrets": TransitionContext.forget_secrets,
    }
)


@attrs.frozen(slots=True)
class _Edge:
    """One transition as ``fire`` runs it: guards to pass, then actions, to ``dest``."""

    guards: tuple[Guard, ...]
    actions: tuple[Action, ...]
    dest: str


class _StepModel:
    """The light model ``transitions`` moves for one step (never added to the Machine)."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


class CompiledFlow:
    """A spec compiled into a machine; ``fire`` moves a flow one step."""

    def __init__(self, spec: FlowSpec, guards: Mapping[str, Guard], actions: Mapping[str, Action]):
        self.spec = spec
        machine = spec.machine
        #: final state -> the outcome it stands for.
        self.final: Mapping[str, Outcome] = MappingProxyType(dict(machine.final) if machine else {})
        self.states = tuple(machine.states if machine else ())
        self.initial = machine.initial if machine else ""
        self.triggers = frozenset(t.trigger for t in machine.transitions) if machine else frozenset()
        #: None for a grant-only spec: it has no flows to move.
        self.machine: Machine | None = _build_machine(machine, guards, actions) if machine else None
        #: (state, trigger) -> the edges that trigger may take from that state, in order.
        self._edges = _edge_table(self.machine) if self.machine is not None else {}

    def is_final(self, flow: Flow) -> bool:
        """True when the flow has reached one of the spec's final states."""
        return flow.state in self.final

    def outcome_of(self, state: str) -> Outcome | None:
        """The outcome a final state stands for; None for a pending state."""
        return self.final.get(state)

    def settle(self, flow: Flow) -> Flow:
        """``flow`` as read from a store, with the outcome this machine gives its state (``settle``)."""
        return settle(flow, self.final)

    def can_fire(self, state: str, event: str) -> bool:
        """True when some transition on ``event`` leaves ``state``."""
        return (state, event) in self._edges

    def fire(self, ctx: TransitionContext) -> str:
        """Run the first transition on ``ctx.event`` whose guards pass; return its dest."""
        for edge in self._edges.get((ctx.flow.state, ctx.event), ()):
            for guard in edge.guards:
                if not guard(ctx):
                    break
            else:
                for action in edge.actions:
                    action(ctx)
                return edge.dest
        raise FlowStateError(
            f"no transition on {ctx.event!r} applies to a flow in state {ctx.flow.state!r}",
            flow_id=ctx.flow.id,
        )

    def fire_with_transitions(self, ctx: TransitionContext) -> str:
        """Run the same step through ``transitions``' own trigger machinery; return the dest.

        The reference ``fire`` is proven against (tests/core/test_machine_differential.py).
        """
        if self.machine is None or ctx.event not in self.machine.events:
            raise FlowStateError(f"no transition on {ctx.event!r}", flow_id=ctx.flow.id)
        model = _StepModel(ctx.flow.state)
        try:
            moved = self.machine.events[ctx.event].trigger(model, ctx=ctx)
        except MachineError:
            moved = False  # no transition on this trigger leaves the state at all
        if not moved:
            raise FlowStateError(
                f"no transition on {ctx.event!r} applies to a flow in state {ctx.flow.state!r}",
                flow_id=ctx.flow.id,
            )
        return model.state

    def edges(self) -> Iterable[tuple[str, str, str, tuple[str, ...]]]:
        """Every edge of the compiled machine as (source, dest, trigger, guard names)."""
        if self.machine is None:
            return
        for trigger, event in self.machine.events.items():
            for source, transitions in event.transitions.items():
                for transition in transitions:
                    names = tuple(str(vars(c.func)["guard_name"]) for c in transition.conditions)
                    yield source, str(transition.dest), trigger, names


def settle(flow: Flow, final: Mapping[str, Outcome]) -> Flow:
    """``flow`` as read from a store, with the outcome its machine's ``final`` states give its state.

    A flow stored before outcomes were recorded (0.1.0) has none: it gets its
    state's. A stored outcome the machine disagrees with is a damaged record
    (``StoreError`` ``store_corrupt``): the machine, not the copy, is the truth.
    """
    outcome = final.get(flow.state)
    if flow.outcome == outcome:
        return flow
    if flow.outcome is None:
        return evolve(flow, outcome=outcome)
    raise StoreError(
        f"stored flow {flow.id!r} says {flow.outcome!r} but its state {flow.state!r} means "
        f"{outcome or 'pending'!r}",
        code=ErrorCode.STORE_CORRUPT,
        flow_id=flow.id,
        retryable=False,
    )


def _build_machine(spec: MachineSpec, guards: Mapping[str, Guard], actions: Mapping[str, Action]) -> Machine:
    """The spec's machine as a ``transitions`` Machine, with no model attached.

    A ``"*"`` source means every state that is not final: a final state is final.
    """
    machine = Machine(
        model=None,
        states=list(spec.states),
        initial=spec.initial,
        auto_transitions=False,
        send_event=True,
    )
    pending = [s for s in spec.states if s not in spec.final]
    for t in spec.transitions:
        sources: Any = pending if "*" in t.source else list(t.source)
        machine.add_transition(
            t.trigger,
            sources,
            t.dest,
            conditions=[_as_condition(name, guards[name]) for name in t.when],
            after=[_as_callback(actions[name]) for name in t.do],
        )
    return machine


def _as_condition(name: str, guard: Guard) -> Callable[[Any], bool]:
    def condition(event: Any) -> bool:
        return bool(guard(event.kwargs["ctx"]))

    vars(condition).update(guard_name=name, guard=guard)
    return condition


def _as_callback(action: Action) -> Callable[[Any], None]:
    def callback(event: Any) -> None:
        action(event.kwargs["ctx"])

    vars(callback).update(action=action)
    return callback


def _edge_table(machine: Machine) -> dict[tuple[str, str], tuple[_Edge, ...]]:
    """The machine's transitions as (state, trigger) -> edges, in the order it would try them.

    Read back from the built Machine (not the spec), so that ``fire`` takes
    exactly the transitions ``transitions`` would.
    """
    table: dict[tuple[str, str], tuple[_Edge, ...]] = {}
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            edges = [
                _Edge(
                    guards=tuple(vars(cond.func)["guard"] for cond in transition.conditions),
                    actions=tuple(vars(callback)["action"] for callback in transition.after),
                    dest=str(transition.dest),
                )
                for transition in transitions
            ]
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

    ``guards``/``actions`` default to the built-ins only (``_plugins.known_names``
    adds what plugins contribute). A spec compiled again with the same guards and
    actions gets the same CompiledFlow (it holds no per-flow state, so any number
    of engines and threads share it): building the Machine is the dear part.
    """
    guards = BUILTIN_GUARDS if guards is None else guards
    actions = BUILTIN_ACTIONS if actions is None else actions
    cached = _compiled.get(spec)
    if cached is not None and cached[0] == guards and cached[1] == actions:
        return cached[2]
    problems = check_names(spec, guards, actions)
    if problems:
        raise SpecError(problems)
    compiled = CompiledFlow(spec, guards, actions)
    _compiled[spec] = (dict(guards), dict(actions), compiled)
    return compiled
