"""What a batch yields per item, and the summary a run writes (``--report FILE``).

An item's outcome is one word, and its reason a stable error code (the engine's
codes, plus the batch's own: ``input_invalid``, ``batch_stopped``). Neither holds
a secret: items are named by token key, input line or row, never by a value.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

import attrs

__all__ = ["DONE_OUTCOMES", "OK_OUTCOMES", "ItemResult", "ItemStatus", "Report"]

#: How one item of a run ended (not a flow's ``Outcome``: a refresh or a grant has no flow).
ItemStatus = Literal[
    "refreshed", "exchanged", "granted", "skipped", "dead", "denied", "failed", "interrupted"
]
#: Item statuses that need no attention (the exit status stays 0).
OK_OUTCOMES: frozenset[str] = frozenset({"refreshed", "exchanged", "granted", "skipped"})
#: Item statuses a rerun keeps: everything but ``interrupted`` (the item is tried again).
DONE_OUTCOMES: frozenset[str] = OK_OUTCOMES | {"dead", "denied", "failed"}


@attrs.frozen
class ItemResult:
    """How one item ended.

    ``item`` names it (a token key, ``line 3``, ``row 7``); ``error`` is a stable
    code when it did not succeed; ``token_key`` and ``flow_id`` say what it
    produced or touched; ``requests`` how many HTTP requests it made in this run
    (0 when it was settled without one); ``resumed`` marks an outcome carried
    over from an interrupted run by the state file.
    """

    item: str
    outcome: ItemStatus
    error: str | None = None
    message: str | None = None
    token_key: str | None = None
    flow_id: str | None = None
    requests: int = 0
    elapsed: float = 0.0
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True when the item needs no attention."""
        return self.outcome in OK_OUTCOMES

    @property
    def done(self) -> bool:
        """True when a rerun keeps this outcome instead of trying again."""
        return self.outcome in DONE_OUTCOMES

    def line(self) -> str:
        """The item for people: outcome, item, reason, and whether an earlier run settled it."""
        reason = f" {self.error}" if self.error else ""
        carried = " (earlier run)" if self.resumed else ""
        return f"{self.outcome} {self.item}{reason}{carried}"

    def to_json(self) -> dict[str, Any]:
        """The item as a report line (``resumed`` and timing are the run's, not the item's)."""
        return {
            "item": self.item,
            "outcome": self.outcome,
            "error": self.error,
            "message": self.message,
            "token_key": self.token_key,
            "flow_id": self.flow_id,
            "requests": self.requests,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, resumed: bool = False) -> ItemResult:
        """Read back ``to_json`` output (from a state file)."""
        return cls(
            item=str(data["item"]),
            outcome=data["outcome"],
            error=data.get("error"),
            message=data.get("message"),
            token_key=data.get("token_key"),
            flow_id=data.get("flow_id"),
            requests=int(data.get("requests", 0)),
            resumed=resumed,
        )


def _natural(name: str) -> list[Any]:
    """``line 2`` before ``line 10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@attrs.define
class Report:
    """The running summary of a batch: counts per outcome and error, rate, and every item."""

    job: str
    total: int = 0
    started_at: float = attrs.field(factory=time.time)
    finished_at: float | None = None
    stopped: bool = False
    results: dict[str, ItemResult] = attrs.field(factory=dict)
    _clock_start: float = attrs.field(factory=time.monotonic, repr=False)
    _clock_end: float | None = attrs.field(default=None, repr=False)

    def add(self, result: ItemResult) -> None:
        """Count one item's outcome (a later outcome of the same item replaces the earlier)."""
        self.results[result.item] = result

    def add_all(self, results: Iterable[ItemResult]) -> None:
        """Count several outcomes."""
        for result in results:
            self.add(result)

    def finish(self, *, stopped: bool = False) -> None:
        """Stamp the end of the run."""
        self.finished_at = time.time()
        self._clock_end = time.monotonic()
        self.stopped = stopped

    @property
    def counts(self) -> dict[str, int]:
        """Items per outcome, most frequent first."""
        return dict(Counter(r.outcome for r in self.results.values()).most_common())

    @property
    def errors(self) -> dict[str, int]:
        """Items per error code, most frequent first."""
        return dict(Counter(r.error for r in self.results.values() if r.error).most_common())

    @property
    def elapsed(self) -> float:
        """Seconds the run has taken so far."""
        return (self._clock_end or time.monotonic()) - self._clock_start

    @property
    def rate(self) -> float:
        """Items finished in this run per second (carried-over outcomes excluded)."""
        fresh = sum(1 for r in self.results.values() if not r.resumed)
        return fresh / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def pending(self) -> int:
        """Items not settled: never started, or interrupted."""
        return self.total - sum(1 for r in self.results.values() if r.done)

    @property
    def complete(self) -> bool:
        """True when every item is settled."""
        return self.pending == 0

    @property
    def ok(self) -> bool:
        """True when every item is settled and none needs attention."""
        return self.complete and all(r.ok for r in self.results.values())

    def summary_line(self) -> str:
        """One line for people: how many, how fast, which outcomes."""
        counts = ", ".join(f"{name} {count}" for name, count in self.counts.items()) or "nothing to do"
        line = f"{self.job}: {self.total} item(s) in {self.elapsed:.1f}s ({self.rate:.1f}/s): {counts}"
        if self.pending:
            line += f"; {self.pending} left for a rerun"
        return line

    def to_json(self) -> dict[str, Any]:
        """The report document: the run, its counts, and every item sorted by name."""
        return {
            "job": self.job,
            "complete": self.complete,
            "stopped": self.stopped,
            "total": self.total,
            "pending": self.pending,
            "resumed": sum(1 for r in self.results.values() if r.resumed),
            "counts": self.counts,
            "errors": self.errors,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed": round(self.elapsed, 3),
            "rate": round(self.rate, 2),
            "items": [self.results[name].to_json() for name in sorted(self.results, key=_natural)],
        }
