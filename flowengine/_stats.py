"""What a store counts for the operator's view, and the rules every store counts by.

``flowengine status`` and the web frontend's operator page must not read every
flow and token on every refresh, so the stores keep counts as they write
(docs/operations.md says what each number means, docs/performance.md what it
costs):

- the flows stored in each state of each spec (``StateCount``), kept in the same
  atomic operation that writes the flow, and lowered when a flow is deleted or purged;
- the transitions made, per hour (``StepCount``): each write of a flow records its
  newest history entry (``step_of``), so the counts say how many flows took each edge,
  and with which error code, in each hour. Buckets older than ``STEPS_KEPT`` may be
  dropped (``purge``; Redis lets them expire);
- the tokens of each provider by health at a time (``TokenCounts``): the stores keep
  dead and live tokens apart, live ones ordered by expiry, so that the count of
  those expiring within a window is a range count of an index.

These are the records the ``Store`` methods ``flow_counts`` and ``token_counts``
return, and the pure rules (``step_of``, ``health_of``, ``hour_of``) every store uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import ClassVar, TypeAlias

import attrs

from flowengine._records import Flow, HistoryEntry, Token

__all__ = [
    "MAX_WINDOW",
    "STEPS_KEPT",
    "STEP_BUCKET",
    "FlowCounts",
    "HealthCount",
    "StateCount",
    "StepCount",
    "TokenCounts",
    "TokenHealth",
    "attention_order",
    "check_token_query",
    "flow_columns",
    "health_of",
    "hour_of",
    "step_of",
]

#: Transitions are counted in buckets of this many seconds (an hour), by the time they happened.
STEP_BUCKET = 3600.0
#: The longest window a status read may ask for (a week).
MAX_WINDOW = 7 * 86400.0
#: How long a store keeps a bucket: a week and a day, so a week's window always has its first hour.
STEPS_KEPT = MAX_WINDOW + 86400.0


class TokenHealth(StrEnum):
    """How a token stands at a given time, within a refresh window."""

    #: Not dead, and valid beyond the refresh window (or with no known expiry).
    FRESH = "fresh"
    #: Not dead, and expiring within the refresh window.
    EXPIRING = "expiring"
    #: Expired, not dead, with a refresh token: a refresh brings it back.
    REFRESHABLE = "refreshable"
    #: Expired, with no refresh token: only a new login brings it back.
    EXPIRED = "expired"
    #: The grant is lost (the provider refused its refresh token): a new login is needed.
    DEAD = "dead"
    #: Held by a process that could not save it yet (never in a store: the process reports it).
    UNSAVED = "unsaved"


@attrs.frozen(slots=True)
class StateCount:
    """How many flows of ``spec`` are stored in ``state`` now."""

    spec: str
    state: str
    count: int


@attrs.frozen(slots=True)
class StepCount:
    """How many flows of ``spec`` took one edge in the hour starting at ``hour`` (Unix seconds).

    ``source`` is ``""`` for the start of a flow (``event`` ``start``, ``dest`` the
    initial state); ``error`` is the code the transition recorded, if any.
    """

    spec: str
    hour: float
    source: str
    event: str
    dest: str
    error: str | None
    count: int


@attrs.frozen(slots=True)
class FlowCounts:
    """What ``Store.flow_counts`` answers: flows per state now, transitions per hour since a time.

    ``BUCKET``: transitions are counted per this many seconds (an hour); ``KEPT``: a store
    keeps a bucket this long (``purge`` may drop older ones); ``MAX_WINDOW``: the longest
    window a status read may ask for.
    """

    BUCKET: ClassVar[float] = STEP_BUCKET
    KEPT: ClassVar[float] = STEPS_KEPT
    MAX_WINDOW: ClassVar[float] = MAX_WINDOW

    states: tuple[StateCount, ...] = ()
    steps: tuple[StepCount, ...] = ()

    @classmethod
    def summed(cls, states: Iterable[StateCount], steps: Iterable[StepCount]) -> FlowCounts:
        """Counts with one key added up (a store may spread a count over rows), zeros left out, sorted."""
        state_sums: dict[tuple[str, str], int] = {}
        for c in states:
            state_sums[c.spec, c.state] = state_sums.get((c.spec, c.state), 0) + c.count
        step_sums: dict[tuple[str, float, str, str, str, str | None], int] = {}
        for t in steps:
            key = (t.spec, t.hour, t.source, t.event, t.dest, t.error or None)
            step_sums[key] = step_sums.get(key, 0) + t.count
        return cls(
            states=tuple(StateCount(*k, count=n) for k, n in sorted(state_sums.items()) if n),
            steps=tuple(
                StepCount(*k, count=n)
                for k, n in sorted(step_sums.items(), key=lambda kv: (*kv[0][:5], kv[0][5] or ""))
                if n
            ),
        )


@attrs.frozen(slots=True)
class HealthCount:
    """How many tokens of ``provider`` are in one health."""

    provider: str
    health: TokenHealth
    count: int


@attrs.frozen(slots=True)
class TokenCounts:
    """What ``Store.token_counts`` answers.

    ``counts``: per provider, the tokens in each health but ``unsaved`` (a health with
    none may be left out). ``tokens``: per provider, up to the asked number of those
    needing attention, in ``attention_order``: dead ones (most recently found dead
    first), then expired and expiring ones (soonest expiry first).
    """

    counts: tuple[HealthCount, ...] = ()
    tokens: tuple[Token, ...] = ()


def hour_of(at: float) -> float:
    """The start of the bucket ``at`` falls in (Unix seconds)."""
    return math.floor(at / STEP_BUCKET) * STEP_BUCKET


def step_of(flow: Flow) -> HistoryEntry | None:
    """The transition a write of ``flow`` records: its newest history entry, if it leads to its state.

    The core adds exactly one entry per version, so the newest entry of a
    compare-and-set's record is the edge that write took (and a created flow's is
    its ``start``). A record with no such entry (made by hand) counts no step.
    """
    if flow.history and flow.history[-1].dest == flow.state:
        return flow.history[-1]
    return None


#: ``flow_columns``' values: spec, state, state_hash, version, created_at, expires_at, record, then
#: step_hour, step_source, step_event, step_error.
FlowColumns: TypeAlias = tuple[
    str, str, str, int, float, float, bytes, float | None, str | None, str | None, str | None
]


def flow_columns(flow: Flow, record: bytes) -> FlowColumns:
    """The columns a SQL store writes for ``flow`` (its id aside), in the bundled stores' order.

    ``spec, state, state_hash, version, created_at, expires_at`` (the clear columns a
    store finds flows by), ``record`` (as given: the codec's bytes of the whole flow),
    then the transition this write records (``step_of``), which counting triggers read:
    ``step_hour`` (its ``hour_of``), ``step_source``, ``step_event``, ``step_error``, all
    None when the write records none.
    """
    step = step_of(flow)
    hour, source, event, error = (
        (None, None, None, None) if step is None else (hour_of(step.at), step.source, step.event, step.error)
    )
    return (
        flow.spec,
        flow.state,
        flow.state_hash,
        flow.version,
        flow.created_at,
        flow.expires_at,
        record,
        hour,
        source,
        event,
        error,
    )


def health_of(token: Token, now: float, within: float) -> TokenHealth:
    """The token's health at ``now``, with a refresh window of ``within`` seconds."""
    if token.dead:
        return TokenHealth.DEAD
    if token.expires_at is None or token.expires_at > now + within:
        return TokenHealth.FRESH
    if token.expires_at > now:
        return TokenHealth.EXPIRING
    return TokenHealth.REFRESHABLE if token.refresh_token else TokenHealth.EXPIRED


def attention_order(tokens: Iterable[Token]) -> list[Token]:
    """Dead tokens first (most recently found dead first), then the others by expiry, soonest first."""

    def key(token: Token) -> tuple[int, float, str]:
        if token.dead:
            return (0, -(token.dead_at if token.dead_at is not None else token.obtained_at), token.key)
        return (1, token.expires_at if token.expires_at is not None else math.inf, token.key)

    return sorted(tokens, key=key)


def check_token_query(now: float, within: float, limit: int) -> None:
    """Refuse (``ValueError``) a token count at a time that is no time, a negative window or limit."""
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite time, not {now!r}")
    if not (math.isfinite(within) and within >= 0):
        raise ValueError(f"the refresh window must be a finite number of seconds >= 0, not {within!r}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit!r}")
