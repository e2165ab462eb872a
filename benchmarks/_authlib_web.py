"""The web load benchmark's baseline: the Starlette app a user would write with Authlib instead.

``python -m benchmarks._authlib_web`` serves it on a free loopback port and
prints ``authlib web on URL``. The same four requests as flowengine's web
frontend, for the same load generator (benchmarks/web_load.py):

- ``GET /auth/podio``: ``authorize_redirect`` (Authlib keeps the state in the
  signed session cookie of Starlette's ``SessionMiddleware``), 302;
- ``GET /auth/podio/callback``: ``authorize_access_token`` (checks the state,
  sends the token request: Authlib's form-encoded POST with the client secret
  in the body, to the sandbox's form endpoint), saves the token where every
  worker can read it, remembers the user in the session, 303;
- ``GET /auth/podio/result``: reads the session and the saved token, 200.

The token is saved in Redis (one ``SET``, read back by one ``GET``) when
``AUTHLIB_WEB_REDIS`` names a key prefix, as flowengine's frontend keeps its
flows and tokens in the store the workers share; else in the process's memory
(one worker only). With ``AUTHLIB_WEB_SHARED_TLS=1`` every httpx client
Authlib makes shares one SSL context (see ``create_app``). The session
secret is ``AUTHLIB_WEB_SECRET``, the same for every worker so a callback can
reach any of them, and the server is the one flowengine's frontend runs on
(uvicorn, no access log: ``flowengine.serving``).
"""

from __future__ import annotations

import json
import os
import ssl
from typing import Any

from authlib.integrations.starlette_client import OAuth
from flowengine.serving import bind, serve_app_forever, url_of
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from benchmarks._common import CLIENT_ID, CLIENT_SECRET

__all__ = ["create_app"]


def create_app(
    sandbox: str, base: str, secret: str, redis_prefix: str | None, *, shared_tls: bool = False
) -> Starlette:
    """The app: Authlib's Starlette client registered against ``sandbox``, callbacks to ``base``.

    Authlib makes a new httpx client for each authorization URL and each token
    request, and each new httpx client loads the CA bundle into a new SSL
    context (tens of ms). ``shared_tls`` hands every client one context made
    at start-up instead: the same verification, a change a user who profiled
    the app could make, so the faster baseline is measured too.
    """
    client_kwargs: dict[str, Any] = {"token_endpoint_auth_method": "client_secret_post"}
    if shared_tls:
        client_kwargs["verify"] = ssl.create_default_context()
    oauth = OAuth()
    oauth.register(
        "podio",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        authorize_url=f"{sandbox}/oauth/authorize",
        access_token_url=f"{sandbox}/oauth/token",
        client_kwargs=client_kwargs,
    )
    saved: dict[str, str] = {}
    redis: Any = None
    if redis_prefix is not None:
        import redis.asyncio as aioredis

        redis = aioredis.Redis(host="127.0.0.1", port=6379)

    async def start(request: Request) -> Response:
        response: Response = await oauth.podio.authorize_redirect(request, f"{base}/auth/podio/callback")
        return response

    async def callback(request: Request) -> Response:
        token = await oauth.podio.authorize_access_token(request)
        user = str(token.get("ref", {}).get("id", "someone"))
        if redis is not None:
            await redis.set(f"{redis_prefix}token:{user}", json.dumps(token))
        else:
            saved[user] = json.dumps(token)
        request.session["user"] = user
        return RedirectResponse("/auth/podio/result", status_code=303)

    async def result(request: Request) -> Response:
        user = request.session.get("user")
        found = saved.get(user) if redis is None else await redis.get(f"{redis_prefix}token:{user}")
        if user is None or found is None:
            return HTMLResponse("<h1>Not authorized</h1>", status_code=404)
        return HTMLResponse("<h1>Authorized</h1>")

    routes = [
        Route("/auth/podio", start),
        Route("/auth/podio/callback", callback),
        Route("/auth/podio/result", result),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SessionMiddleware, secret_key=secret)])


def main() -> None:
    """Serve the app on a free port of 127.0.0.1 until interrupted."""
    sock = bind("127.0.0.1", 0)
    base = url_of(sock).rstrip("/")
    app = create_app(
        os.environ["AUTHLIB_WEB_SANDBOX"],
        base,
        os.environ["AUTHLIB_WEB_SECRET"],
        os.environ.get("AUTHLIB_WEB_REDIS"),
        shared_tls=os.environ.get("AUTHLIB_WEB_SHARED_TLS") == "1",
    )
    serve_app_forever(app, sock, lambda: print(f"authlib web on {base}/ ", flush=True))


if __name__ == "__main__":
    main()
