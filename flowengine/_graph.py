"""A spec's machine drawn by ``transitions``' own diagram support (Mermaid or Graphviz DOT).

The drawing machine is a ``GraphMachine`` built from the same ``MachineSpec``
as the one that runs, with guard names as its conditions (it is never
triggered). ``transitions`` draws states, edges and guards; we add only what its
drawing leaves out: the final states (Mermaid ``--> [*]``, a double border in
DOT). Imported only when a graph is drawn: ``transitions.extensions`` is not
light, and DOT needs the ``graphviz`` package.
"""

from __future__ import annotations

from typing import Any, Literal

from flowengine._errors import ConfigError, ErrorCode
from flowengine._spec import FlowSpec, MachineSpec

__all__ = ["GRAPH_FORMATS", "render_graph"]

GRAPH_FORMATS = ("mermaid", "dot")


def _graph_machine(machine: MachineSpec, title: str, engine: Literal["mermaid", "graphviz"]) -> Any:
    from transitions.extensions.diagrams import GraphMachine

    drawing = GraphMachine(
        model=None,
        states=list(machine.states),
        initial=machine.initial,
        auto_transitions=False,
        graph_engine=engine,
        show_conditions=True,
        title=title,
    )
    pending = [s for s in machine.states if s not in machine.final]
    for t in machine.transitions:
        sources: Any = pending if "*" in t.source else list(t.source)
        drawing.add_transition(t.trigger, sources, t.dest, conditions=list(t.when))
    return drawing.graph_cls(drawing).get_graph(title)


def render_graph(spec: FlowSpec, fmt: str = "mermaid") -> str:
    """The spec's machine as Mermaid ``stateDiagram-v2`` or Graphviz DOT text."""
    machine = spec.machine
    if machine is None:
        raise ConfigError(
            f"spec {spec.name!r} is grant-only: it has no machine to draw", code=ErrorCode.GRANT_ONLY_SPEC
        )
    if fmt not in GRAPH_FORMATS:
        raise ConfigError(f"unknown graph format {fmt!r} (mermaid or dot)")
    if fmt == "mermaid":
        text: str = _graph_machine(machine, spec.name, "mermaid").draw(None)
        return text.rstrip("\n") + "\n" + "".join(f"  {state} --> [*]\n" for state in machine.final)
    graph = _graph_machine(machine, spec.name, "graphviz")
    for state in machine.final:
        graph.node(state, peripheries="2")
    return str(graph.source)
