"""Telling ``flowengine_request`` observers about each provider request the driver sends.

The driver times every attempt and reports it once it ended, as a
``RequestEvent`` built from names and numbers only (no header, body or query:
SECURITY.md 13). An observer is other people's code: one that fails is logged
(``_plugins.notify_request``) and the request's outcome is unchanged.
"""

from __future__ import annotations

import time

import pluggy

from flowengine import _plugins
from flowengine._events import RequestEvent
from flowengine._http import HttpRequest

__all__ = ["RequestTimer"]


class RequestTimer:
    """One attempt at one request, from the moment it is sent; ``done`` reports it."""

    __slots__ = ("_pm", "_t0", "attempt", "flow_id", "purpose", "request", "spec", "started_at")

    def __init__(
        self,
        spec: str,
        purpose: str,
        request: HttpRequest,
        attempt: int,
        pm: pluggy.PluginManager | None,
        *,
        flow_id: str | None = None,
    ) -> None:
        self.spec = spec
        self.purpose = purpose
        self.request = request
        self.attempt = attempt
        self.flow_id = flow_id
        self._pm = pm
        self.started_at = time.time()
        self._t0 = time.perf_counter()

    def done(self, *, status: int | None, error: str | None, retry_in: float | None = None) -> None:
        """Report the attempt: its HTTP status (None: no answer), error code, and the wait before the next."""
        if not _plugins.observing_requests(self._pm):
            return  # no one to tell: the event is not even made
        event = RequestEvent(
            spec=self.spec,
            purpose=self.purpose,
            method=self.request.method,
            url=self.request.url,
            attempt=self.attempt,
            started_at=self.started_at,
            duration=time.perf_counter() - self._t0,
            status=status,
            error=None if error is None else str(error),
            retry_in=retry_in,
            flow_id=self.flow_id,
        )
        _plugins.notify_request(event, self._pm)
