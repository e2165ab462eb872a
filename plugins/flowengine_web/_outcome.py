"""How a flow ended, in the frontend's words, and its JSON form (no secret, no digest)."""

from __future__ import annotations

from typing import Any

from flowengine import AsyncEngine, Flow

from flowengine_web._pages import Outcome

__all__ = ["flow_json", "outcome_of"]


#: The page each of the machine's outcomes gets (an expired flow failed, as far as the person can tell).
_PAGES: dict[str, Outcome] = {
    "granted": "success",
    "denied": "denied",
    "expired": "failed",
    "failed": "failed",
}


def outcome_of(engine: AsyncEngine, flow: Flow) -> Outcome:
    """How a flow ended, from the outcome its final state declares: success, denied, failed, pending."""
    return "pending" if flow.outcome is None else _PAGES[flow.outcome]


def flow_json(flow: Flow, outcome: Outcome, result_url: str, retry_url: str) -> dict[str, Any]:
    """The outcome document of the JSON routes."""
    error = flow.error
    return {
        "flow_id": flow.id,
        "spec": flow.spec,
        "state": flow.state,
        "outcome": outcome,
        "account": None if flow.account is None else {"type": flow.account.type, "id": flow.account.id},
        "token_fingerprint": flow.token_fingerprint,
        "scope": flow.scope,
        "granted_scope": flow.granted_scope,
        "missing_scopes": sorted(flow.missing_scopes),
        "error": None
        if error is None
        else {"code": error.code, "message": error.message, "description": error.description},
        "result_url": result_url,
        "retry_url": None if outcome == "success" else retry_url,
    }
