"""The consent page of an emulated provider: who asks, for what, and Grant or Deny."""

from __future__ import annotations

import html
from collections.abc import Mapping

from flowengine import FlowSpec
from starlette.requests import Request
from starlette.responses import HTMLResponse

from flowengine_sandbox._web import NO_STORE, settings_of

__all__ = ["consent_page"]

_PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def consent_page(
    request: Request, spec: FlowSpec, client_id: str, fields: Mapping[str, str], scope: str
) -> HTMLResponse:
    """The page the person sees: the request's parameters ride along in hidden fields."""
    escape = html.escape
    hidden = "\n".join(
        f'    <input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in fields.items()
        if name != "decision"
    )
    scopes = "\n".join(
        f"    <li><code>{escape(s)}</code></li>" for s in scope.split(spec.scope_separator) if s
    )
    provider = escape(spec.description or spec.name)
    page = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Authorize {escape(client_id)} - {escape(spec.name)} sandbox</title>
</head>
<body>
<main>
  <h1>Authorize {escape(client_id)}</h1>
  <p>{provider}, emulated by the flowengine sandbox.</p>
  <p>Signed in as {escape(settings_of(request).user.email)}</p>
  <ul>
{scopes or "    <li>(no scope)</li>"}
  </ul>
  <form method="post" action="{escape(request.url.path)}">
{hidden}
    <button name="decision" value="grant">Grant</button>
    <button name="decision" value="deny">Deny</button>
  </form>
</main>
</body>
</html>
"""
    return HTMLResponse(page, headers=_PAGE_HEADERS)
