"""``create_app``: any spec behind two routes, as a Starlette app a host app can mount.

The routes (relative to where the app is mounted):

- ``GET /``: a home page with a "Try to authorize" link per spec;
- ``GET /auth/{spec}``: start a flow bound to the browser session, 302 to the provider;
- ``GET /auth/{spec}/callback``: finish it, then 303 to a clean URL (the code never
  stays in the address bar or the history);
- ``GET /auth/{spec}/result/{flow_id}``: how the flow ended, for its own session only;
- ``GET /auth/{spec}/error/{reason}``: why a callback was refused, with a Retry link;
- ``GET /operator``: the operator page, only when an operator secret or hook is given
  (``_operator``).

Each answers JSON instead when the request prefers ``application/json``. The
engine makes a replayed callback idempotent (one token request, one outcome);
this layer adds nothing that is not: ``on_token`` runs once per flow, however
many times and on however many workers its callback arrives.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from flowengine import (
    AsyncEngine,
    ConfigError,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from flowengine_web._connection import check_engines, checked_base_url, named_engines
from flowengine_web._frontend import Frontend
from flowengine_web._hooks import Connection, OnToken, Render, Subject, SuccessUrl
from flowengine_web._http import SecurityHeadersMiddleware
from flowengine_web._operator import OperatorPage
from flowengine_web._operator_auth import OperatorAccess, OperatorHook
from flowengine_web._session import SecretKey, SessionCookies

__all__ = ["create_app"]


def _routes(frontend: Frontend, *, home: bool) -> list[Route]:
    """The flow routes (and the home page): what every app serves."""
    routes = [
        Route("/auth/{spec}", frontend.start, methods=["GET"]),
        Route("/auth/{spec}/callback", frontend.callback, methods=["GET"]),
        Route("/auth/{spec}/result/{flow_id}", frontend.result, methods=["GET"]),
        Route("/auth/{spec}/error/{reason}", frontend.error, methods=["GET"]),
    ]
    if home:
        routes.insert(0, Route("/", frontend.home, methods=["GET"]))
    return routes


def _checked_scopes(scopes: Mapping[str, str], named: Mapping[str, AsyncEngine]) -> Mapping[str, str]:
    unknown = sorted(set(scopes) - set(named))
    if unknown:
        raise ConfigError(f"scopes given for unknown spec names: {', '.join(unknown)}", code="config_invalid")
    return scopes


def _operator_routes(
    named: Mapping[str, AsyncEngine],
    frontend: Frontend,
    secret: str | bytes | None,
    hook: OperatorHook | None,
    refresh: float,
) -> list[Route]:
    """The operator page's routes: none unless a secret or a hook is given."""
    if secret is None and hook is None:
        return []
    if not (0 < refresh <= 3600):
        raise ConfigError("operator_refresh is seconds between 0 and 3600", code="config_invalid")
    return OperatorPage(named, OperatorAccess(secret, hook), refresh=refresh, path=frontend.path).routes()


def _lifespan(
    named: Mapping[str, AsyncEngine], *, close: bool
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: with ``close``, the engines are closed (each once) when it shuts down."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close:
                for engine in {id(e): e for e in named.values()}.values():
                    await engine.aclose()

    return lifespan


def create_app(
    engines: AsyncEngine | Mapping[str, AsyncEngine],
    *,
    secret_key: SecretKey,
    scopes: Mapping[str, str] | None = None,
    base_url: str | None = None,
    on_token: OnToken | None = None,
    success_url: SuccessUrl | None = None,
    render: Render | None = None,
    subject: Subject | None = None,
    home: bool = True,
    title: str = "flowengine",
    cookie_name: str = "flowengine_session",
    close_engines: bool = False,
    connection: Connection | None = None,
    pinned: Mapping[str, Mapping[str, str]] | None = None,
    operator_secret: str | bytes | None = None,
    operator: OperatorHook | None = None,
    operator_refresh: float = 10.0,
) -> Starlette:
    """A Starlette app serving the authorization flows of ``engines``; mount it anywhere.

    ``engines`` is one AsyncEngine (served under its spec's name) or a mapping of URL
    names to engines. ``secret_key`` signs the session cookie (at least 16 bytes; a list
    rotates keys: the first signs, all verify). ``scopes``: a name's scope.
    ``base_url``: the public origin (and prefix) of the redirect URI. The hooks, each sync or async, are in
    docs/web.md: ``on_token``, ``success_url``, ``subject``, ``render`` and ``connection``
    (None: the query's). ``pinned`` maps a name to the connection values configuration
    fixes: a query may not change them, nor give one that can name any host
    (``flowengine.pinned_connection``). ``home=False`` drops the home page;
    ``close_engines=True`` closes the engines at shutdown. The operator page (``/operator``) is off unless
    ``operator_secret`` (at least 16 bytes: a sign-in form takes it) or ``operator``
    (``operator(request)`` True admits a request) is given; it refreshes itself every
    ``operator_refresh`` seconds.
    """
    named = named_engines(engines)
    scopes = _checked_scopes(scopes or {}, named)
    check_engines({n: e.spec for n, e in named.items()}, pinned or {}, hooked=connection is not None)
    frontend = Frontend(
        named,
        SessionCookies(secret_key, cookie_name=cookie_name),
        scopes=scopes,
        base_url=checked_base_url(base_url),
        on_token=on_token,
        success_url=success_url,
        render=render,
        title=title,
        subject=subject,
        connection=connection,
        pinned=pinned,
    )
    app = Starlette(
        routes=_routes(frontend, home=home)
        + _operator_routes(named, frontend, operator_secret, operator, operator_refresh),
        middleware=[Middleware(SecurityHeadersMiddleware)],
        exception_handlers={HTTPException: frontend.http_error, Exception: frontend.server_error},
        lifespan=_lifespan(named, close=close_engines),
    )
    app.state.flowengine_engines = named
    return app
