"""The operator page's pictures as inline SVG, drawn here from the compiled machine's states and edges.

Why not Graphviz: ``dot`` would be a binary to install on every web host, run
once per spec on every refresh, and its layout moves when a count in a label
changes width. This layout is a function of the machine alone (columns by
distance from the initial state, rows by the machine's order, nudged towards
the states that lead in), so boxes stay put while the numbers change, and it
needs nothing but Python. Every count is text in the SVG with a ``data-``
attribute naming what it counts, for people and for tests alike. Styling is
by class, from the page's first-party style sheet (the CSP allows no inline style).
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

import attrs
from flowengine import EdgeView, FailureView, SpecStatus, StateView

__all__ = ["failure_chart", "machine_diagram"]

_W, _H = 168, 52  # a state's box
_GAP_X, _GAP_Y = 96, 30
_MARGIN = 24
_START = 40  # room left of the first column for the start dot
_COLOURS = 6  # the chart's colour classes c0..c5 (c5 is "other")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


@attrs.frozen
class _Box:
    x: float
    y: float
    column: int

    @property
    def mid_y(self) -> float:
        return self.y + _H / 2


def _columns(states: Sequence[StateView]) -> dict[str, int]:
    """Pending states by their distance from the initial state; final states all in the last column.

    With the ends on the right every edge into a final state runs forward, and the
    only edges drawn backwards are the machine's own loops (``unsent``).
    """
    pending = [s for s in states if not s.final]
    last = max((s.depth for s in pending), default=-1) + 1
    return {s.name: (last if s.final and pending else s.depth) for s in states}


def _layout(states: Sequence[StateView], edges: Sequence[EdgeView], top: float) -> dict[str, _Box]:
    """Columns (``_columns``); in each, states ordered by the mean row of the states leading in."""
    column_of = _columns(states)
    columns: dict[int, list[StateView]] = {}
    for state in states:
        columns.setdefault(column_of[state.name], []).append(state)
    rows: dict[str, float] = {}
    for number in sorted(columns):
        column = columns[number]
        declared = {s.name: i for i, s in enumerate(column)}

        def weight(state: StateView, declared: dict[str, int] = declared) -> tuple[float, int]:
            before = [rows[e.source] for e in edges if e.dest == state.name and e.source in rows]
            return (
                sum(before) / len(before) if before else float(declared[state.name]),
                declared[state.name],
            )

        for row, state in enumerate(sorted(column, key=weight)):
            rows[state.name] = row
    return {
        s.name: _Box(
            _START + _MARGIN + column_of[s.name] * (_W + _GAP_X),
            top + rows[s.name] * (_H + _GAP_Y),
            column_of[s.name],
        )
        for s in states
    }


def _state_svg(state: StateView, box: _Box) -> str:
    kind = f"final {state.outcome}" if state.outcome is not None else "pending"
    if state.outcome is not None:
        number, word, attr = state.entered, str(state.outcome), "data-entered"
    else:
        number, word, attr = state.stored, "waiting", "data-pending"
    return (
        f'<g class="state {kind}" data-state="{_e(state.name)}" {attr}="{number}">'
        f'<rect x="{box.x}" y="{box.y}" width="{_W}" height="{_H}" rx="8"/>'
        f'<text class="name" x="{box.x + _W / 2}" y="{box.y + 21}">{_e(state.name)}</text>'
        f'<text class="count" x="{box.x + _W / 2}" y="{box.y + 40}">{number} {_e(word)}</text></g>'
    )


@attrs.frozen
class _Curve:
    """One drawn edge (all the events between two states): its path and where its label goes."""

    d: str
    label_x: float
    label_y: float


def _ports(
    pairs: Sequence[tuple[str, str]], boxes: dict[str, _Box]
) -> dict[tuple[str, str], tuple[float, float]]:
    """Where each forward edge leaves its source and enters its dest: spread along the box's side."""
    leaving: dict[str, list[tuple[str, str]]] = {}
    entering: dict[str, list[tuple[str, str]]] = {}
    for pair in pairs:
        leaving.setdefault(pair[0], []).append(pair)
        entering.setdefault(pair[1], []).append(pair)

    def spread(group: list[tuple[str, str]], pair: tuple[str, str], box: _Box) -> float:
        ordered = sorted(group, key=lambda p: (boxes[p[1]].y, boxes[p[0]].y))
        i, n = ordered.index(pair), len(group)
        return box.y + _H * (i + 1) / (n + 1)

    return {
        pair: (
            spread(leaving[pair[0]], pair, boxes[pair[0]]),
            spread(entering[pair[1]], pair, boxes[pair[1]]),
        )
        for pair in pairs
    }


def _forward(source: _Box, dest: _Box, y1: float, y2: float) -> _Curve:
    x1, x2 = source.x + _W, dest.x
    if dest.column - source.column <= 1:
        dx = (x2 - x1) / 2
        return _Curve(
            f"M{x1},{y1} C{x1 + dx},{y1} {x2 - dx},{y2} {x2},{y2}", (x1 + x2) / 2, (y1 + y2) / 2 - 4
        )
    # Over several columns: turn to the dest's height within the first gap, then run straight.
    bend = x1 + _GAP_X * 0.8
    d = f"M{x1},{y1} C{x1 + _GAP_X * 0.5},{y1} {x1 + _GAP_X * 0.3},{y2} {bend},{y2} L{x2},{y2}"
    return _Curve(d, (bend + x2) / 2, y2 - 4)


def _backward(source: _Box, dest: _Box, lane: int) -> _Curve:
    """A loop back (or within a column), drawn above the boxes in its own lane."""
    x1, x2 = source.x + _W * 0.5, dest.x + _W * 0.5
    y1, y2 = source.y, dest.y
    high = min(y1, y2) - 22 - 16 * lane
    return _Curve(f"M{x1},{y1} C{x1},{high} {x2},{high} {x2},{y2}", (x1 + x2) / 2, high + 8)


def _edges_svg(edges: Sequence[EdgeView], boxes: dict[str, _Box]) -> tuple[list[str], list[str]]:
    """The curves (one per pair of states: its events share a label) and their labels."""
    pairs: dict[tuple[str, str], list[EdgeView]] = {}
    for edge in edges:
        if edge.source:
            pairs.setdefault((edge.source, edge.dest), []).append(edge)
    forward = [p for p in pairs if boxes[p[1]].column > boxes[p[0]].column]
    ports = _ports(forward, boxes)
    most = max((e.count for e in edges if e.source), default=0) or 1
    curves, labels, lane = [], [], 0
    for pair, group in pairs.items():
        if pair in ports:
            curve = _forward(boxes[pair[0]], boxes[pair[1]], *ports[pair])
        else:
            curve, lane = _backward(boxes[pair[0]], boxes[pair[1]], lane), lane + 1
        count = sum(e.count for e in group)
        kind = "edge taken" if count else "edge idle"
        width = min(5, round(1.2 + 3.5 * count / most))
        curves.append(f'<path class="{kind} w{width}" d="{curve.d}" marker-end="url(#arrow)"/>')
        for i, e in enumerate(group):
            y = curve.label_y - (len(group) - 1 - i) * 13
            labels.append(
                f'<text class="edge-label" x="{curve.label_x:.1f}" y="{y:.1f}"'
                f' data-edge="{_e(e.source)} {_e(e.event)} {_e(e.dest)}" data-count="{e.count}">'
                f"{_e(e.event)} {e.count}</text>"
            )
    return curves, labels


def machine_diagram(spec: SpecStatus) -> str:
    """The spec's machine as an SVG: a box per state with its count, an arrow per edge with its count."""
    columns = _columns(spec.states)
    backs = {(e.source, e.dest) for e in spec.edges if e.source and columns[e.dest] <= columns[e.source]}
    top = _MARGIN + 18 + (22 + 16 * len(backs) if backs else 0)
    boxes = _layout(spec.states, spec.edges, top)
    curves, labels = _edges_svg(spec.edges, boxes)
    width = max(b.x for b in boxes.values()) + _W + _MARGIN
    height = max(b.y for b in boxes.values()) + _H + _MARGIN
    starts = []
    for edge in spec.edges:
        if edge.source == "" and edge.dest in boxes:
            box = boxes[edge.dest]
            x = box.x - _START
            starts.append(
                f'<circle class="start" cx="{x}" cy="{box.mid_y}" r="7"/>'
                f'<path class="edge taken w1" d="M{x + 7},{box.mid_y} L{box.x},{box.mid_y}"'
                ' marker-end="url(#arrow)"/>'
                f'<text class="edge-label start-label" x="{x - 7}" y="{box.y - 8}"'
                f' data-edge=" start {_e(edge.dest)}" data-count="{edge.count}">{edge.count} started</text>'
            )
    states = [_state_svg(s, boxes[s.name]) for s in spec.states]
    title = f"The {spec.name} machine: flows waiting in each state, and taking each edge"
    return (
        f'<svg class="machine" role="img" aria-label="{_e(title)}" viewBox="0 0 {width:.0f} {height:.0f}"'
        f' width="{width:.0f}" height="{height:.0f}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{_e(title)}</title>"
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9"'
        ' markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        '<path class="arrowhead" d="M0,0 L10,5 L0,10 z"/>'
        "</marker></defs>" + "".join(curves) + "".join(starts) + "".join(states) + "".join(labels) + "</svg>"
    )


def failure_chart(spec: SpecStatus, *, width: int = 640, height: int = 150) -> str:
    """Error codes per hour as stacked bars (the five commonest, then "other"), with a legend."""
    hours = spec.hours
    codes: list[FailureView] = list(spec.failures[: _COLOURS - 1])
    rest = spec.failures[_COLOURS - 1 :]
    if rest:
        other = tuple(sum(f.by_hour[i] for f in rest) for i in range(len(hours)))
        codes.append(FailureView("other", sum(other), other))
    totals = [sum(f.by_hour[i] for f in codes) for i in range(len(hours))]
    top = max(totals, default=0) or 1
    plot_h, left, bottom = height - 34, 34, height - 20
    slot = (width - left - 8) / max(1, len(hours))
    bars = []
    for i, hour in enumerate(hours):
        y = float(bottom)
        for colour, failure in enumerate(codes):
            n = failure.by_hour[i]
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            when = time.strftime("%H:00", time.localtime(hour))
            x, bar = left + i * slot + 1, max(1.0, slot - 2)
            bars.append(
                f'<rect class="c{colour}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{_e(when)}: {_e(failure.code)} {n}</title></rect>"
            )
    ticks = []
    step = max(1, len(hours) // 6)
    for i in range(0, len(hours), step):
        when = time.strftime("%H:00" if len(hours) <= 48 else "%d %H:00", time.localtime(hours[i]))
        ticks.append(f'<text class="tick" x="{left + i * slot:.1f}" y="{height - 4}">{_e(when)}</text>')
    axis = (
        f'<text class="tick" x="2" y="{bottom - plot_h + 10:.0f}">{top}</text>'
        f'<text class="tick" x="2" y="{bottom}">0</text>'
        f'<path class="axis" d="M{left},{bottom} H{width - 8}"/>'
    )
    legend = "".join(
        f'<li data-code="{_e(f.code)}" data-count="{f.count}"><span class="swatch c{i}"></span>'
        f"<code>{_e(f.code)}</code> {f.count}</li>"
        for i, f in enumerate(codes)
    )
    label = f"Error codes per hour, {spec.name}"
    svg = (
        f'<svg class="chart" role="img" aria-label="{_e(label)}" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{_e(label)}</title>'
        + axis
        + "".join(bars)
        + "".join(ticks)
        + "</svg>"
    )
    return svg + (
        f'<ul class="legend">{legend}</ul>' if legend else '<p class="quiet">No errors in the window.</p>'
    )
