"""The table ``fire`` walks takes exactly the transitions ``transitions``' own trigger takes.

``CompiledFlow.fire`` runs a table read back from the built Machine (measured
cheaper than ``transitions``' trigger machinery: benchmarks/engine_cost.py).
This proves the two agree, for every shipped and example spec, every state,
every trigger and every combination of guard outcomes: the same destination
(or the same refusal), and the same actions run in the same order.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import attrs
import flowengine as fe
import pytest
from flowengine._machine import CompiledFlow, compile_flow
from flowengine._presets import PRESETS

SPECS = Path(__file__).resolve().parents[2] / "specs"
SHIPPED = sorted([*SPECS.glob("*.yaml"), *SPECS.glob("examples/*.yaml")])


def _machine_specs() -> list[tuple[str, fe.FlowSpec]]:
    """Every machine a shipped spec runs: its flows' and, with a device section, the device preset."""
    found = []
    for path in SHIPPED:
        spec = fe.load_spec(path)
        if spec.machine is not None:
            found.append((path.name, spec))
        if spec.device is not None:
            found.append((f"{path.name}#device", attrs.evolve(spec, machine=PRESETS["device"])))
    return found


def _rig(spec: fe.FlowSpec) -> tuple[CompiledFlow, dict[str, bool], list[str]]:
    """The spec compiled with guards that answer from ``outcomes`` and actions that log their names."""
    outcomes: dict[str, bool] = {}
    ran: list[str] = []
    names = {name for t in spec.machine.transitions for name in t.when}
    actions = {name for t in spec.machine.transitions for name in t.do}
    guards = {name: (lambda _ctx, n=name: outcomes[n]) for name in names}
    logged = {name: (lambda _ctx, n=name: ran.append(n)) for name in actions}
    return compile_flow(spec, guards=guards, actions=logged), outcomes, ran


def _flow(state: str) -> fe.Flow:
    return fe.Flow(
        id="f",
        spec="s",
        state=state,
        created_at=0.0,
        expires_at=1.0,
        client_id="c",
        redirect_uri="https://app.example/cb",
        state_hash="h",
    )


def _run(compiled: CompiledFlow, spec: fe.FlowSpec, state: str, trigger: str, ran: list[str], own: bool):
    ran.clear()
    ctx = fe.TransitionContext(spec, _flow(state), trigger)
    try:
        dest = compiled.fire_with_transitions(ctx) if own else compiled.fire(ctx)
    except fe.FlowStateError:
        dest = None
    return dest, list(ran)


@pytest.mark.parametrize(("name", "spec"), _machine_specs(), ids=[n for n, _ in _machine_specs()])
def test_the_table_and_transitions_agree_everywhere(name: str, spec: fe.FlowSpec) -> None:
    compiled, outcomes, ran = _rig(spec)
    guard_names = sorted({g for t in spec.machine.transitions for g in t.when})
    triggers = sorted({t.trigger for t in spec.machine.transitions})
    checked = 0
    for state, trigger in itertools.product(spec.machine.states, triggers):
        for values in itertools.product((False, True), repeat=len(guard_names)):
            outcomes.update(zip(guard_names, values, strict=True))
            table = _run(compiled, spec, state, trigger, ran, own=False)
            own = _run(compiled, spec, state, trigger, ran, own=True)
            assert table == own, (state, trigger, dict(outcomes))
            checked += 1
    assert checked >= len(spec.machine.states) * len(triggers)


def test_every_preset_is_checked_too() -> None:
    """The presets are what most specs run: the differential covers them through the shipped specs."""
    shipped = {spec.machine.preset for _, spec in _machine_specs()}
    assert set(PRESETS) <= shipped
