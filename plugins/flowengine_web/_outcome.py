"""Which page a flow's result gets, its JSON form (no secret, no digest), and the flows just finished."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flowengine import Flow, digests_equal

from flowengine_web._pages import ResultKind

__all__ = ["RecentOutcomes", "flow_json", "result_kind"]


#: The page each of the core's outcomes gets (an expired flow failed, as far as the person can tell).
_PAGES: dict[str, ResultKind] = {
    "granted": "success",
    "denied": "denied",
    "expired": "failed",
    "failed": "failed",
}


def result_kind(flow: Flow) -> ResultKind:
    """The page a flow's result gets, from ``flow.outcome``: success, denied, failed or pending."""
    return "pending" if flow.outcome is None else _PAGES[flow.outcome]


def flow_json(flow: Flow, result_url: str, retry_url: str) -> dict[str, Any]:
    """The outcome document of the JSON routes.

    ``flow_outcome`` is the core's word (``granted``, ``denied``, ``expired``, ``failed``,
    or ``pending``); ``outcome`` keeps the page's word that 0.1.0 documented (``success``, …).
    """
    error = flow.error
    kind = result_kind(flow)
    return {
        "flow_id": flow.id,
        "spec": flow.spec,
        "state": flow.state,
        "outcome": kind,
        "flow_outcome": flow.outcome or "pending",
        "account": None if flow.account is None else {"type": flow.account.type, "id": flow.account.id},
        "token_fingerprint": flow.token_fingerprint,
        "scope": flow.scope,
        "granted_scope": flow.granted_scope,
        "missing_scopes": sorted(flow.missing_scopes),
        "error": None
        if error is None
        else {"code": error.code, "message": error.message, "description": error.description},
        "result_url": result_url,
        "retry_url": None if kind == "success" else retry_url,
    }


class RecentOutcomes:
    """Final flows this worker just finished, for the first view of their result page.

    A callback ends with a 303 to the flow's result page, which the same worker
    usually serves next: that view takes the flow from here (once) instead of
    reading back from the store what the callback just wrote. A reload, or a view
    on another worker, reads the store. Only final flows are kept, as the engine
    returned them: a final flow never moves again, so the page is the one the store
    would give. The result route checks the session and the spec of a flow taken
    from here as it does of one read from the store. At most ``size`` flows are
    kept, each for ``ttl`` seconds.
    """

    def __init__(
        self, size: int = 1024, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self._flows: OrderedDict[str, tuple[float, Flow]] = OrderedDict()

    def put(self, flow: Flow) -> None:
        """Keep a final flow for its first result view, dropping the expired and the oldest."""
        now = self.clock()
        self._flows[flow.id] = (now + self.ttl, flow)
        self._flows.move_to_end(flow.id)
        while self._flows and (len(self._flows) > self.size or next(iter(self._flows.values()))[0] <= now):
            self._flows.popitem(last=False)

    def take(self, flow_id: str, session_hash: str) -> Flow | None:
        """The flow kept under this id for this session (by digest), now forgotten; else None.

        A request of another session (its result page is a 404) leaves the flow kept.
        """
        kept = self._flows.get(flow_id)
        if kept is None or not digests_equal(kept[1].session_hash, session_hash):
            return None
        del self._flows[flow_id]
        return kept[1] if kept[0] > self.clock() else None
