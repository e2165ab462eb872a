"""``flowengine status`` drawn as text: the machine as a tree with counts, failures, tokens.

A ``SpecStatus`` becomes blocks of rows (a heading line, then aligned columns).
On a terminal they are printed through rich, colour telling outcomes apart; in a
pipe as plain text, columns two spaces apart, ASCII only, no trailing spaces.
Cells are never cut nor wrapped, however narrow the terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import attrs
import click
from flowengine import EdgeView, SpecStatus, StateView, Status, TokenHealth
from flowengine.cli import format_duration, printable

from .common import ago

__all__ = ["Block", "blocks_of", "print_status"]

#: A token health as a person reads it (``refreshable`` is an expired token a refresh brings back).
HEALTH_WORDS = {
    TokenHealth.FRESH: "fresh",
    TokenHealth.EXPIRING: "expiring",
    TokenHealth.REFRESHABLE: "expired, refreshable",
    TokenHealth.EXPIRED: "expired",
    TokenHealth.DEAD: "dead",
    TokenHealth.UNSAVED: "unsaved",
}
_STYLE = {"granted": "green", "denied": "yellow", "failed": "red", "expired": "magenta"}


@attrs.frozen
class Glyphs:
    """How the tree is drawn: box drawing on a terminal, ASCII in a pipe."""

    branch: str
    last: str
    down: str
    arrow: str
    again: str
    initial: str
    final: str
    separator: str


UNICODE = Glyphs("├─", "└─", "│ ", "─▶ ", " ↺", "● ", "■ ", " · ")
ASCII = Glyphs("|-", "`-", "| ", "-> ", " (again)", "* ", "# ", "; ")


def _printable_rows(rows: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    """Cells fit for a terminal: an account, a key or a spec name may hold a provider's words."""
    return tuple(tuple(printable(cell) for cell in row) for row in rows)


@attrs.frozen
class Block:
    """A titled table: ``rows`` of cells under ``headers``; ``right`` marks right-aligned columns."""

    title: str = attrs.field(converter=printable)
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...] = attrs.field(converter=_printable_rows)
    right: frozenset[int] = frozenset()
    #: A style per row (rich markup style names), for the terminal only.
    styles: tuple[str, ...] = ()


def _state_label(state: StateView, g: Glyphs) -> str:
    if state.outcome is not None:
        said = "" if state.outcome == state.name else f" ({state.outcome})"
        return f"{g.final}{state.name}{said}"
    return f"{g.initial if state.initial else ''}{state.name}"


def _machine(spec: SpecStatus, g: Glyphs, window: str) -> Block:
    """The machine as a tree from its initial state; a state met again is marked, not redrawn."""
    states = {s.name: s for s in spec.states}
    rows: list[tuple[str, ...]] = []
    styles: list[str] = []
    drawn: set[str] = set()

    def row(text: str, state: StateView, now: str, window: str) -> None:
        rows.append((text, now, window))
        styles.append(_STYLE.get(str(state.outcome), "") if state.outcome else "")

    def walk(name: str, prefix: str) -> None:
        out: list[EdgeView] = [e for e in spec.edges if e.source == name]
        for i, edge in enumerate(out):
            last = i == len(out) - 1
            dest = states[edge.dest]
            again = edge.dest in drawn
            label = f"{prefix}{g.last if last else g.branch}{edge.event}{g.arrow}{_state_label(dest, g)}"
            pending = "" if again or dest.pending is None else str(dest.pending)
            row(label + (g.again if again else ""), dest, pending, str(edge.count))
            if not again:
                drawn.add(edge.dest)
                walk(edge.dest, prefix + ("  " if last else g.down))

    roots = [e for e in spec.edges if e.source == ""]
    for start in roots:
        state = states[start.dest]
        drawn.add(state.name)
        row(f"{_state_label(state, g)}", state, str(state.pending or 0), f"{start.count} started")
        walk(state.name, "")
    for state in spec.states:  # states no edge from the start reaches (counted, not in the machine)
        if state.name not in drawn:
            drawn.add(state.name)
            row(_state_label(state, g), state, "" if state.pending is None else str(state.pending), "")
            walk(state.name, "")
    return Block("", ("MACHINE", "NOW", f"LAST {window}"), tuple(rows), frozenset({1, 2}), tuple(styles))


def _summary(spec: SpecStatus, window: str) -> str:
    outcomes = spec.outcomes
    ended = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items()) or "none ended"
    pending = sum(s.pending or 0 for s in spec.states)
    return f"{spec.started} started and {ended} in the last {window}; {pending} pending now"


def _failures(spec: SpecStatus, window: str) -> Block:
    rows = tuple((f.code, str(f.count)) for f in spec.failures[:10])
    title = f"Error codes (failures and denials), last {window}" + ("" if rows else ": none")
    return Block(title, ("CODE", "COUNT") if rows else (), rows, frozenset({1}), ("red",) * len(rows))


def _tokens(spec: SpecStatus, now: float, refresh: str, g: Glyphs) -> list[Block]:
    view = spec.tokens
    counts = [
        (HEALTH_WORDS[h], "?" if view.count(h) is None else str(view.count(h)))
        for h in (*view.counts, TokenHealth.UNSAVED)
        if h is TokenHealth.UNSAVED or h in view.counts
    ]
    order = [HEALTH_WORDS[h] for h in TokenHealth]
    counts.sort(key=lambda c: order.index(c[0]))
    line = g.separator.join(f"{n} {word}" for word, n in counts)
    title = f"Tokens (expiring: within {refresh}): {line}"
    blocks = [Block(title, (), ())]
    if view.rows:
        rows = tuple(
            (
                HEALTH_WORDS[r.health],
                r.account,
                r.key,
                ago(r.expires_at, now),
                ago(r.dead_at, now) if r.dead_at is not None else "",
                ago(r.obtained_at, now),
            )
            for r in view.rows
        )
        styles = tuple(
            "red" if r.health in (TokenHealth.DEAD, TokenHealth.UNSAVED) else "yellow" for r in view.rows
        )
        more = f" ({view.not_shown} more not shown)" if view.not_shown else ""
        blocks.append(
            Block(
                f"Needing attention{more}:",
                ("HEALTH", "ACCOUNT", "KEY", "EXPIRES", "DIED", "OBTAINED"),
                rows,
                styles=styles,
            )
        )
    if view.unsaved is None:
        blocks.append(
            Block(
                "Unsaved tokens live only in the process holding them: see its operator page or log.", (), ()
            )
        )
    return blocks


def blocks_of(status: Status, *, ascii_only: bool) -> list[list[Block]]:
    """What ``flowengine status`` prints: a heading, then per spec its blocks."""
    g = ASCII if ascii_only else UNICODE
    window, refresh = format_duration(status.window), format_duration(status.refresh_window)
    read_at = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(status.now))
    heading = [
        Block(f"flowengine status at {read_at}: the last {window}, tokens expiring within {refresh}", (), ())
    ]
    groups = [heading]
    for spec in status.specs:
        known = "" if spec.machine_known else " (spec not found here: states and edges as counted)"
        blocks = [Block(f"{spec.name}{known}", (), ())]
        if spec.states:
            blocks.append(_machine(spec, g, window))
            blocks.append(Block(_summary(spec, window), (), ()))
            blocks.append(_failures(spec, window))
        blocks.extend(_tokens(spec, status.now, refresh, g))
        groups.append(blocks)
    if not status.specs:
        heading.append(Block("No flows or tokens in this store yet.", (), ()))
    return groups


def _plain(block: Block) -> list[str]:
    lines = [block.title] if block.title else []
    if not block.headers:
        return lines
    table = [block.headers, *block.rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(block.headers))]
    for row in table:
        cells = [
            cell.rjust(width) if i in block.right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def print_status(status: Status) -> None:
    """Print it: rich on a terminal, plain aligned ASCII text in a pipe (blank lines between specs)."""
    if sys.stdout.isatty():
        _print_rich(blocks_of(status, ascii_only=False))
        return
    for i, group in enumerate(blocks_of(status, ascii_only=True)):
        if i:
            click.echo("")
        for block in group:
            for line in _plain(block):
                click.echo(line)


def _print_rich(groups: Sequence[Sequence[Block]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    widest = max((len(line) for group in groups for block in group for line in _plain(block)), default=0)
    console.width = max(console.width, widest + 4)  # never cut: a narrow terminal wraps the line instead
    for number, group in enumerate(groups):
        if number:
            console.print()
        for i, block in enumerate(group):
            if block.title:
                console.print(Text(block.title, style="bold" if i == 0 else ""), soft_wrap=True)
            if not block.headers:
                continue
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
            for column, header in enumerate(block.headers):
                table.add_column(header, no_wrap=True, justify="right" if column in block.right else "left")
            for row, cells in enumerate(block.rows):
                table.add_row(*cells, style=block.styles[row] if row < len(block.styles) else None)
            console.print(table)
