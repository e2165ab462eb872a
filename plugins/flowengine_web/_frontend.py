"""The routes' handlers: one ``_Frontend`` serves every spec an app was made with (``_app``).

Each route answers JSON instead when the request prefers ``application/json``. The
engine makes a replayed callback idempotent (one token request, one outcome);
this layer adds nothing that is not: ``on_token`` runs once per flow, however
many times and on however many workers its callback arrives.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from flowengine import (
    AsyncEngine,
    ConfigError,
    ErrorInfo,
    Flow,
    FlowError,
    Outcome,
    digest,
    digests_equal,
    parse_web_url,
)
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from flowengine_web._connection import QueryConnection
from flowengine_web._hooks import Connection, OnToken, Render, Subject, SuccessUrl, deliver_once, resolve
from flowengine_web._http import SECURITY_HEADERS, wants_json
from flowengine_web._outcome import RecentOutcomes, flow_json, result_kind
from flowengine_web._pages import Page, PageKind, SpecLink, describe_error, render_html
from flowengine_web._session import SessionCookies

__all__ = ["Frontend"]

log = logging.getLogger("flowengine.web")

_FLOW_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
# HTTP status of an error page, by code; anything else a callback is refused for is 400.
_STATUS = {
    "store_unavailable": 503,
    "store_conflict": 503,
    "store_corrupt": 500,
    "transport_error": 502,
    "transport_timeout": 502,
    "response_too_large": 502,
    "config_invalid": 500,
    "redirect_uri_invalid": 500,
    "token_hook_failed": 500,
    "token_unknown": 500,
}
_TITLES = {
    "success": "Authorized",
    "denied": "Authorization denied",
    "failed": "Authorization failed",
    "pending": "Authorization in progress",
    "error": "Authorization failed",
    "not_found": "Not found",
}


class Frontend:
    """The route handlers, sharing the engines, the session cookies and the host's hooks."""

    def __init__(
        self,
        engines: Mapping[str, AsyncEngine],
        sessions: SessionCookies,
        *,
        scopes: Mapping[str, str],
        base_url: str | None,
        on_token: OnToken | None,
        success_url: SuccessUrl | None,
        render: Render | None,
        title: str,
        subject: Subject | None = None,
        connection: Connection | None = None,
        pinned: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.engines = dict(engines)
        self.connection = connection
        self.queries = {
            name: QueryConnection(engine.spec, pinned=(pinned or {}).get(name, {}))
            for name, engine in self.engines.items()
        }
        self.sessions = sessions
        self.scopes = dict(scopes)
        self.base_url = base_url
        self.on_token = on_token
        self.success_url = success_url
        self.subject = subject
        self.render = render
        self.title = title
        self.recent = RecentOutcomes()

    # --- URLs -----------------------------------------------------------------------

    @staticmethod
    def path(request: Request, suffix: str) -> str:
        """An absolute path under the app's mount point (no reliance on route names)."""
        root: str = request.scope.get("root_path", "")
        return root.rstrip("/") + suffix

    def redirect_uri(self, request: Request, spec: str) -> str:
        """The callback URL the provider sends the person back to (``base_url`` if set)."""
        path = self.path(request, f"/auth/{spec}/callback")
        if self.base_url is not None:
            return self.base_url + path
        return str(request.url.replace(path=path, query="", fragment=""))

    def _same_origin(self, request: Request, url: str) -> bool:
        """True for a path on this site, or a URL whose origin (as a browser reads it) is this app's."""
        if url.startswith("/") and not url.startswith("//"):
            # A browser drops tabs and newlines and reads "\\" as "/": "/\\evil.example" is another host.
            return url.isascii() and url.isprintable() and " " not in url and "\\" not in url
        try:
            origin = parse_web_url(url).origin
            origins = {parse_web_url(str(request.url)).origin}
            if self.base_url is not None:
                origins.add(parse_web_url(self.base_url).origin)
        except FlowError:
            return False
        return origin in origins

    # --- responses ------------------------------------------------------------------

    def engine(self, request: Request) -> tuple[str, AsyncEngine]:
        """The spec name in the path and its engine; 404 for a spec this app does not serve."""
        name: str = request.path_params["spec"]
        engine = self.engines.get(name)
        if engine is None:
            raise HTTPException(404, "no such spec")
        return name, engine

    async def show(self, request: Request, page: Page) -> Response:
        """The page through the host's ``render`` hook, or the default HTML."""
        if self.render is not None:
            custom = await resolve(self.render(request, page))
            if isinstance(custom, Response):
                return custom
            if isinstance(custom, str):
                return HTMLResponse(custom, status_code=page.status_code)
        return HTMLResponse(render_html(page), status_code=page.status_code)

    @staticmethod
    def see_other(location: str) -> Response:
        """303: the browser GETs ``location`` and the URL it came from leaves no history entry."""
        return Response(status_code=303, headers={"Location": location})

    async def failure(self, request: Request, spec: str, code: str) -> Response:
        """The error page (or JSON) for a refusal or a failure that has no flow to show."""
        status = _STATUS.get(code, 400)
        retry = self.path(request, f"/auth/{spec}")
        error = ErrorInfo(code=code, message=describe_error(code))
        if wants_json(request):
            return JSONResponse(
                {"error": {"code": code, "message": error.message}, "retry_url": retry}, status_code=status
            )
        page = Page(
            "error",
            status,
            _TITLES["error"],
            home_url=self.path(request, "/"),
            spec=spec,
            error=error,
            retry_url=retry,
        )
        return await self.show(request, page)

    async def outcome(self, request: Request, spec: str, flow: Flow) -> Response:
        """The page (or JSON) for a flow's outcome."""
        outcome = result_kind(flow)
        result_url = self.path(request, f"/auth/{spec}/result/{flow.id}")
        retry_url = self.path(request, f"/auth/{spec}")
        if wants_json(request):
            return JSONResponse(flow_json(flow, result_url, retry_url))
        page = Page(
            outcome,
            200,
            _TITLES[outcome],
            home_url=self.path(request, "/"),
            spec=spec,
            flow=flow,
            error=flow.error if outcome in ("denied", "failed") else None,
            retry_url=None if outcome in ("success", "pending") else retry_url,
            result_url=result_url,
        )
        response = await self.show(request, page)
        if outcome == "pending":
            response.headers.setdefault("Refresh", "2")
        return response

    # --- routes ---------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """``GET /``: every spec with a "Try to authorize" link."""
        links = tuple(
            SpecLink(name, engine.spec.description, self.path(request, f"/auth/{name}"))
            for name, engine in self.engines.items()
        )
        response: Response
        if wants_json(request):
            response = JSONResponse(
                {
                    "specs": [
                        {"name": s.name, "description": s.description, "start_url": s.start_url}
                        for s in links
                    ]
                }
            )
        else:
            page = Page("home", 200, self.title, home_url=self.path(request, "/"), specs=links)
            response = await self.show(request, page)
        return response  # no session yet: each flow start issues a fresh one

    async def start(self, request: Request) -> Response:
        """``GET /auth/{spec}``: start a flow bound to a fresh session of this browser, 302 to the provider.

        Fresh at every start, whatever cookie came in: a planted one binds nothing (SECURITY.md 31).
        """
        name, engine = self.engine(request)
        sid = self.sessions.fresh()
        response: Response
        try:
            flow = await engine.start(
                scope=self.scopes.get(name),
                session=sid,
                redirect_uri=self.redirect_uri(request, name),
                subject=await resolve(self.subject(request)) if self.subject is not None else None,
                connection=await self.connection_values(request, name),
            )
        except FlowError as exc:
            log.warning("web: cannot start a %s flow: %s", name, exc)
            response = await self.failure(request, name, exc.code)
        else:
            url = flow.authorization_url or ""
            if wants_json(request):
                response = JSONResponse(
                    {
                        "flow_id": flow.id,
                        "spec": name,
                        "authorization_url": url,
                        "expires_at": flow.expires_at,
                        "result_url": self.path(request, f"/auth/{name}/result/{flow.id}"),
                    }
                )
            else:
                # Not RedirectResponse: it re-quotes URLs, and this one must reach the provider as made.
                response = Response(status_code=302, headers={"Location": url})
        self.sessions.issue(request, response, sid)
        return response

    async def connection_values(self, request: Request, name: str) -> dict[str, str]:
        """The flow's connection values: the host's ``connection`` hook, else the query's.

        ``/auth/zendesk?subdomain=acme``: each query parameter named like a connection
        variable of the spec, checked by the engine against its pattern; never one that
        ``pinned`` fixes or that can name any host (``connection_pinned``, SECURITY.md 36).
        """
        if self.connection is not None:
            given = await resolve(self.connection(request, name))
            if given is not None:
                return dict(given)
        return self.queries[name](request.query_params)

    async def callback(self, request: Request) -> Response:
        """``GET /auth/{spec}/callback``: finish the flow, then 303 to its clean result URL."""
        name, engine = self.engine(request)
        query = request.scope.get("query_string", b"").decode("latin-1")
        try:
            flow = await engine.callback("?" + query, session=self.sessions.read(request))
        except FlowError as exc:
            # Nothing about the request is logged but the code: its URL holds a code.
            log.info("web: %s callback refused: %s", name, exc.code)
            return await self.refused(request, name, exc.code)
        granted = flow.outcome == Outcome.GRANTED
        if granted and self.on_token is not None:
            try:
                await deliver_once(self.on_token, request, engine, flow)
            except FlowError as exc:
                log.warning("web: %s flow %s: token hook not run: %s", name, flow.id, exc)
                return await self.refused(request, name, exc.code)
            except Exception:
                log.exception("web: %s flow %s: the on_token hook failed", name, flow.id)
                return await self.refused(request, name, "token_hook_failed")
        if wants_json(request):
            return await self.outcome(request, name, flow)
        target = None
        if granted and self.success_url is not None:
            target = await resolve(self.success_url(request, flow))
            if target is not None and not self._same_origin(request, target):
                raise ConfigError("success_url returned a URL on another origin", code="config_invalid")
        if target is None and engine.is_final(flow):
            self.recent.put(flow)  # its result page, next, need not read it back from the store
        return self.see_other(target or self.path(request, f"/auth/{name}/result/{flow.id}"))

    async def refused(self, request: Request, spec: str, code: str) -> Response:
        """A callback that ends without a flow to show: JSON now, or 303 to the error page."""
        if wants_json(request):
            return await self.failure(request, spec, code)
        return self.see_other(self.path(request, f"/auth/{spec}/error/{code}"))

    async def result(self, request: Request) -> Response:
        """``GET /auth/{spec}/result/{flow_id}``: the outcome, to the session that started it only."""
        name, engine = self.engine(request)
        flow_id: str = request.path_params["flow_id"]
        sid = self.sessions.read(request)
        flow = None
        if sid is not None and _FLOW_ID.fullmatch(flow_id):
            try:
                flow = self.recent.take(flow_id, digest(sid)) or await engine.get(flow_id)
            except FlowError as exc:
                return await self.failure(request, name, exc.code)
        if (
            flow is None
            or sid is None
            or flow.spec != engine.spec.name
            or not digests_equal(flow.session_hash, digest(sid))
        ):
            # Another session's flow is as absent as a flow that never was.
            raise HTTPException(404, "no such result")
        return await self.outcome(request, name, flow)

    async def error(self, request: Request) -> Response:
        """``GET /auth/{spec}/error/{reason}``: why a callback was refused, with a Retry link."""
        name, _ = self.engine(request)
        reason: str = request.path_params["reason"]
        if not _REASON.fullmatch(reason):
            raise HTTPException(404, "no such reason")
        return await self.failure(request, name, reason)

    # --- errors ---------------------------------------------------------------------

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """404 (unknown spec or path), 405 and other HTTP errors, as pages or JSON."""
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        if wants_json(request):
            return JSONResponse(
                {"error": {"code": code, "message": exc.detail}},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        kind: PageKind = "not_found" if exc.status_code == 404 else "error"
        page = Page(
            kind,
            exc.status_code,
            _TITLES[kind],
            home_url=self.path(request, "/"),
            error=None if kind == "not_found" else ErrorInfo(code=code, message=exc.detail),
        )
        response = await self.show(request, page)
        for name, value in (exc.headers or {}).items():
            response.headers.setdefault(name, value)
        return response

    async def server_error(self, request: Request, exc: Exception) -> Response:
        """500: the default page only (the host's renderer may be what failed); headers set here,
        since this runs outside the middleware."""
        page = Page(
            "error",
            500,
            _TITLES["error"],
            home_url=self.path(request, "/"),
            error=ErrorInfo(code="internal_error", message="Something went wrong on this site."),
        )
        return HTMLResponse(render_html(page), status_code=500, headers=dict(SECURITY_HEADERS))
