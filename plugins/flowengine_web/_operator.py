"""The operator page: the app's specs with live counts, failures over time, and every token's health.

Routes, only when ``create_app`` was given an ``operator_secret`` or an
``operator`` hook (see ``_operator_auth``):

- ``GET /operator``: the page (JSON with ``Accept: application/json``), or the
  sign-in form / a refusal (403) to a request not admitted;
- ``GET /operator/live``: the part of the page that refreshes, for its script;
- ``POST /operator/sign-in`` and ``/operator/sign-out``: the secret's form;
- ``GET /operator/operator.css`` and ``/operator/operator.js``: its own style and script.

Numbers come from ``read_status`` on each engine's store: the counts the stores
keep, never every record. Unsaved tokens are the ones this process's engines hold.
``?window=1h|6h|24h|7d`` picks the window (24 h by default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from flowengine import AsyncEngine, FlowError, SpecStatus, Status, pinned_connection, read_status
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from flowengine_web._http import wants_json
from flowengine_web._operator_auth import OperatorAccess
from flowengine_web._operator_page import (
    OPERATOR_CONTENT_SECURITY_POLICY,
    OPERATOR_SCRIPT,
    OPERATOR_STYLE,
    live_html,
    page_html,
    refused_html,
    start_url,
)

__all__ = ["WINDOWS", "OperatorPage"]

log = logging.getLogger("flowengine.web")

#: The windows the page offers (``?window=``), in seconds.
WINDOWS = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
_DEFAULT_WINDOW = "24h"
_HEADERS = {"Content-Security-Policy": OPERATOR_CONTENT_SECURITY_POLICY}


class OperatorPage:
    """The operator routes, over the app's engines (several may share one store)."""

    def __init__(
        self,
        engines: Mapping[str, AsyncEngine],
        access: OperatorAccess,
        *,
        refresh: float,
        path: Callable[[Request, str], str],
    ) -> None:
        self.engines = dict(engines)
        self.access = access
        self.refresh = refresh
        self.path = path

    def routes(self) -> list[Route]:
        """The routes to add to the app."""
        return [
            Route("/operator", self.page, methods=["GET"]),
            Route("/operator/live", self.live, methods=["GET"]),
            Route("/operator/sign-in", self.sign_in, methods=["POST"]),
            Route("/operator/sign-out", self.sign_out, methods=["POST"]),
            Route("/operator/operator.css", self.style, methods=["GET"]),
            Route("/operator/operator.js", self.script, methods=["GET"]),
        ]

    # --- reading --------------------------------------------------------------------

    async def status(self, window: float) -> Status:
        """Every served spec's status: one ``read_status`` per store the engines use."""
        by_store: dict[int, list[AsyncEngine]] = {}
        for engine in self.engines.values():
            by_store.setdefault(id(engine.store), []).append(engine)
        now = time.time()
        refresh_window = 7200.0  # tokens expiring within 2 h: the keep_fresh window's default
        specs: list[SpecStatus] = []
        for engines in by_store.values():
            found = await read_status(
                engines[0].store,
                now=now,
                window=window,
                refresh_window=refresh_window,
                specs=[e.spec for e in engines],
                only={e.spec.name for e in engines},
                unsaved=[t for e in engines for t in e.unsaved_tokens],
            )
            specs.extend(found.specs)
        specs.sort(key=lambda s: s.name)
        return Status(now=now, window=window, refresh_window=refresh_window, specs=tuple(specs))

    def _start_urls(self, request: Request, status: Status) -> dict[str, str]:
        """Per dead token, the URL starting a new flow of its spec with its connection values.

        Never those that can choose any host: a start URL may not carry them (SECURITY.md 36).
        """
        base = self.path(request, "")
        names = {engine.spec.name: name for name, engine in reversed(self.engines.items())}
        pinned = {engine.spec.name: pinned_connection(engine.spec) for engine in self.engines.values()}
        return {
            row.key: start_url(
                base,
                names[spec.name],
                {k: v for k, v in row.connection.items() if k not in pinned[spec.name]},
            )
            for spec in status.specs
            if spec.name in names
            for row in spec.tokens.rows
        }

    def _window(self, request: Request) -> str | None:
        name = request.query_params.get("window", _DEFAULT_WINDOW)
        return name if name in WINDOWS else None

    # --- routes ---------------------------------------------------------------------

    async def _refused(self, request: Request, *, wrong: bool = False) -> Response:
        if wants_json(request):
            return JSONResponse(
                {"error": {"code": "operator_only", "message": "This page is for the site's operators."}},
                status_code=403,
                headers=_HEADERS,
            )
        body = refused_html(base=self.path(request, ""), signs_in=self.access.signs_in, wrong=wrong)
        return HTMLResponse(body, status_code=403, headers=_HEADERS)

    async def _read(self, request: Request) -> tuple[str, Status] | Response:
        if not await self.access.admits(request):
            return await self._refused(request)
        window = self._window(request)
        if window is None:
            return HTMLResponse("<p>Unknown window: use 1h, 6h, 24h or 7d.</p>", 400, headers=_HEADERS)
        try:
            return window, await self.status(WINDOWS[window])
        except FlowError as exc:
            log.warning("web: the operator page cannot read the store: %s", exc)
            return HTMLResponse(f"<p>The store cannot be read now ({exc.code}).</p>", 503, headers=_HEADERS)

    def _live(self, request: Request, window: str, status: Status) -> str:
        src = self.path(request, f"/operator/live?window={window}")
        return live_html(
            status, refresh=self.refresh, src=src, start_urls=self._start_urls(request, status), window=window
        )

    async def page(self, request: Request) -> Response:
        """``GET /operator``: the page, JSON for scripts, or the sign-in form."""
        read = await self._read(request)
        if isinstance(read, Response):
            return read
        window, status = read
        if wants_json(request):
            return JSONResponse(status.as_json(), headers=_HEADERS)
        windows = {name: self.path(request, f"/operator?window={name}") for name in WINDOWS}
        body = page_html(
            self._live(request, window, status),
            base=self.path(request, ""),
            refresh=self.refresh,
            windows=windows,
            signs_out=self.access.signs_in,
        )
        return HTMLResponse(body, headers=_HEADERS)

    async def live(self, request: Request) -> Response:
        """``GET /operator/live``: the live part alone (what the script swaps in)."""
        read = await self._read(request)
        if isinstance(read, Response):
            return read
        window, status = read
        return HTMLResponse(self._live(request, window, status), headers=_HEADERS)

    async def sign_in(self, request: Request) -> Response:
        """``POST /operator/sign-in``: the secret from the form; 303 to the page, or the form again."""
        response = Response(
            status_code=303, headers={"Location": self.path(request, "/operator"), **_HEADERS}
        )
        if await self.access.sign_in(request, response):
            return response
        body = refused_html(base=self.path(request, ""), signs_in=self.access.signs_in, wrong=True)
        return HTMLResponse(body, status_code=403, headers=_HEADERS)

    async def sign_out(self, request: Request) -> Response:
        """``POST /operator/sign-out``: drop the cookie; 303 to the sign-in form."""
        response = Response(
            status_code=303, headers={"Location": self.path(request, "/operator"), **_HEADERS}
        )
        self.access.sign_out(request, response)
        return response

    async def style(self, request: Request) -> Response:
        """The page's style sheet (static: served to the sign-in form too)."""
        return Response(OPERATOR_STYLE, media_type="text/css", headers=_HEADERS)

    async def script(self, request: Request) -> Response:
        """The page's script (static): it refreshes the live part."""
        return Response(OPERATOR_SCRIPT, media_type="text/javascript", headers=_HEADERS)
