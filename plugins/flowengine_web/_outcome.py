"""Which page a flow's result gets, and its JSON form (no secret, no digest)."""

from __future__ import annotations

from typing import Any

from flowengine import Flow

from flowengine_web._pages import ResultKind

__all__ = ["flow_json", "result_kind"]


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
