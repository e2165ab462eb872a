"""The operator's view of one store: per spec, its machine with counts, its failures, its tokens.

Pure: it reads no store and no clock. ``read_status`` (``_status_read``) asks
the store for its counts and hands them here with the compiled machines; the
terminal (``flowengine status``) and the web frontend's operator page draw what
this builds, and ``Status.as_json()`` is what ``--json`` prints. What each
number means is in docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from flowengine._machine import CompiledFlow
from flowengine._records import Outcome, Token
from flowengine._stats import STEP_BUCKET, FlowCounts, StepCount, TokenCounts, TokenHealth, health_of, hour_of

__all__ = [
    "EdgeView",
    "FailureView",
    "SpecStatus",
    "StateView",
    "Status",
    "TokenRow",
    "TokenView",
    "build_spec_status",
]

#: The healths a store counts, in the order they are shown (``unsaved`` is the process's).
SHOWN_HEALTHS = (
    TokenHealth.FRESH,
    TokenHealth.EXPIRING,
    TokenHealth.REFRESHABLE,
    TokenHealth.EXPIRED,
    TokenHealth.DEAD,
    TokenHealth.UNSAVED,
)


@attrs.frozen(slots=True)
class StateView:
    """A state of the machine: how many flows are in it now, how many entered it in the window."""

    name: str
    initial: bool
    outcome: Outcome | None
    depth: int
    stored: int
    entered: int
    in_machine: bool = True

    @property
    def final(self) -> bool:
        """True for a final state (it declares an outcome)."""
        return self.outcome is not None

    @property
    def pending(self) -> int | None:
        """Flows waiting in this state now; None for a final state (see ``entered``)."""
        return None if self.final else self.stored


@attrs.frozen(slots=True)
class EdgeView:
    """An edge: how many flows took it in the window (``source`` ``""``: flows started)."""

    source: str
    event: str
    dest: str
    count: int
    in_machine: bool = True


@attrs.frozen(slots=True)
class FailureView:
    """An error code transitions recorded in the window, in all and per hour (``SpecStatus.hours``)."""

    code: str
    count: int
    by_hour: tuple[int, ...]


@attrs.frozen(slots=True)
class TokenRow:
    """A token needing attention, as shown: never its secrets, only its fingerprint."""

    key: str
    account: str
    health: TokenHealth
    fingerprint: str
    expires_at: float | None
    obtained_at: float
    dead_at: float | None
    refreshable: bool
    connection: Mapping[str, str]

    @classmethod
    def of(cls, token: Token, health: TokenHealth) -> TokenRow:
        """The row of ``token`` in ``health``."""
        return cls(
            key=token.key,
            account=str(token.account),
            health=health,
            fingerprint=token.fingerprint,
            expires_at=token.expires_at,
            obtained_at=token.obtained_at,
            dead_at=token.dead_at,
            refreshable=token.refresh_token is not None,
            connection=dict(token.connection),
        )


@attrs.frozen(slots=True)
class TokenView:
    """A provider's tokens by health; ``unsaved`` None when this process cannot know it."""

    counts: Mapping[TokenHealth, int]
    unsaved: int | None
    rows: tuple[TokenRow, ...]
    not_shown: int

    def count(self, health: TokenHealth) -> int | None:
        """How many tokens are in ``health`` (None: unsaved, unknown here)."""
        return self.unsaved if health is TokenHealth.UNSAVED else self.counts.get(health, 0)


@attrs.frozen(slots=True)
class SpecStatus:
    """One spec: its machine's states and edges with counts, failures by code and hour, tokens."""

    name: str
    #: False when the spec could not be loaded here: states and edges are only those counted.
    machine_known: bool
    states: tuple[StateView, ...]
    edges: tuple[EdgeView, ...]
    hours: tuple[float, ...]
    failures: tuple[FailureView, ...]
    tokens: TokenView

    @property
    def started(self) -> int:
        """Flows started in the window."""
        return sum(e.count for e in self.edges if e.source == "")

    @property
    def outcomes(self) -> dict[Outcome, int]:
        """Flows that ended in the window, by outcome."""
        ended: dict[Outcome, int] = {}
        for state in self.states:
            if state.outcome is not None:
                ended[state.outcome] = ended.get(state.outcome, 0) + state.entered
        return ended

    def as_json(self) -> dict[str, Any]:
        """JSON-ready data (what ``flowengine status --json`` prints per spec)."""
        return {
            "name": self.name,
            "machine_known": self.machine_known,
            "started": self.started,
            "outcomes": {str(k): v for k, v in self.outcomes.items()},
            "states": [
                {
                    "name": s.name,
                    "initial": s.initial,
                    "final": s.final,
                    "outcome": s.outcome,
                    "pending": s.pending,
                    "stored": s.stored,
                    "entered": s.entered,
                    "in_machine": s.in_machine,
                }
                for s in self.states
            ],
            "edges": [attrs.asdict(e) for e in self.edges],
            "hours": list(self.hours),
            "failures": [
                {"code": f.code, "count": f.count, "by_hour": list(f.by_hour)} for f in self.failures
            ],
            "tokens": {
                "counts": {str(h): self.tokens.count(h) for h in SHOWN_HEALTHS},
                "shown": [{**attrs.asdict(r), "connection": dict(r.connection)} for r in self.tokens.rows],
                "not_shown": self.tokens.not_shown,
            },
        }


@attrs.frozen(slots=True)
class Status:
    """What ``read_status`` answers: the time it was read at, the window, and every spec."""

    now: float
    window: float
    refresh_window: float
    specs: tuple[SpecStatus, ...]

    @property
    def since(self) -> float:
        """The start of the window, rounded down to the hour the counts are kept by."""
        return hour_of(self.now - self.window)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready data: ``flowengine status --json``."""
        return {
            "now": self.now,
            "window": self.window,
            "since": self.since,
            "refresh_window": self.refresh_window,
            "specs": [spec.as_json() for spec in self.specs],
        }


def _depths(initial: str, edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Each state's distance from the initial state (breadth first): the column it is drawn in."""
    depth = {initial: 0} if initial else {}
    frontier = [initial] if initial else []
    pairs = list(edges)
    while frontier:
        following = []
        for state in frontier:
            for source, dest in pairs:
                if source == state and dest not in depth:
                    depth[dest] = depth[state] + 1
                    following.append(dest)
        frontier = following
    return depth


def _machine_edges(compiled: CompiledFlow | None) -> list[tuple[str, str, str]]:
    """(source, event, dest) of every edge, the start first; each once, whatever its guards."""
    if compiled is None or compiled.machine is None:
        return []
    seen = {("", "start", compiled.initial): None}
    for source, dest, trigger, _guards in compiled.edges():
        seen.setdefault((source, trigger, dest), None)
    return list(seen)


def _states(
    compiled: CompiledFlow | None,
    steps: Sequence[StepCount],
    stored: Mapping[str, int],
    edges: list[EdgeView],
) -> tuple[StateView, ...]:
    known = list(compiled.states) if compiled is not None else []
    seen = [s for s in (*stored, *(t.dest for t in steps)) if s not in known]
    names = [*known, *dict.fromkeys(seen)]
    depths = _depths(compiled.initial if compiled else "", ((e.source, e.dest) for e in edges if e.source))
    deepest = max(depths.values(), default=-1)
    return tuple(
        StateView(
            name=name,
            initial=compiled is not None and name == compiled.initial,
            outcome=compiled.outcome_of(name) if compiled is not None else None,
            depth=depths.get(name, deepest + 1),
            stored=stored.get(name, 0),
            entered=sum(t.count for t in steps if t.dest == name),
            in_machine=name in known,
        )
        for name in names
    )


def _edges(compiled: CompiledFlow | None, steps: Sequence[StepCount]) -> list[EdgeView]:
    taken: dict[tuple[str, str, str], int] = {}
    for t in steps:
        taken[t.source, t.event, t.dest] = taken.get((t.source, t.event, t.dest), 0) + t.count
    known = _machine_edges(compiled)
    extra = [key for key in taken if key not in known]
    return [EdgeView(*key, count=taken.get(key, 0), in_machine=key in known) for key in (*known, *extra)]


def _failures(steps: Sequence[StepCount], hours: Sequence[float]) -> tuple[FailureView, ...]:
    index = {hour: i for i, hour in enumerate(hours)}
    per_code: dict[str, list[int]] = {}
    for t in steps:
        if t.error is not None and t.hour in index:
            per_code.setdefault(t.error, [0] * len(hours))[index[t.hour]] += t.count
    views = [FailureView(code, sum(counts), tuple(counts)) for code, counts in per_code.items()]
    return tuple(sorted(views, key=lambda f: (-f.count, f.code)))


def _tokens(
    name: str, counts: TokenCounts, unsaved: Sequence[Token] | None, now: float, within: float
) -> TokenView:
    found = {c.health: c.count for c in counts.counts if c.provider == name}
    mine = [t for t in unsaved or () if t.provider == name]
    rows = [TokenRow.of(t, TokenHealth.UNSAVED) for t in mine]
    rows += [TokenRow.of(t, health_of(t, now, within)) for t in counts.tokens if t.provider == name]
    needing = sum(n for health, n in found.items() if health is not TokenHealth.FRESH)
    return TokenView(
        counts=found,
        unsaved=None if unsaved is None else len(mine),
        rows=tuple(rows),
        not_shown=max(0, needing + len(mine) - len(rows)),
    )


def build_spec_status(
    name: str,
    compiled: CompiledFlow | None,
    flows: FlowCounts,
    tokens: TokenCounts,
    *,
    now: float,
    window: float,
    refresh_window: float,
    unsaved: Sequence[Token] | None,
) -> SpecStatus:
    """One spec's view from the store's counts (``compiled`` None: a spec not loadable here)."""
    first = hour_of(now - window)
    hours = tuple(first + i * STEP_BUCKET for i in range(int((hour_of(now) - first) // STEP_BUCKET) + 1))
    steps = [t for t in flows.steps if t.spec == name and t.hour >= first]
    stored = {c.state: c.count for c in flows.states if c.spec == name}
    edges = _edges(compiled, steps)
    return SpecStatus(
        name=name,
        machine_known=compiled is not None,
        states=_states(compiled, steps, stored, edges),
        edges=tuple(edges),
        hours=hours,
        failures=_failures(steps, hours),
        tokens=_tokens(name, tokens, unsaved, now, refresh_window),
    )
