"""The web frontend: any spec behind two routes, as a Starlette app any ASGI host can mount.

With an operator secret or hook it also serves the operator page (``/operator``).

``create_app(engine_or_engines, secret_key=...)`` returns the app (see
``docs/web.md``); ``flowengine web serve`` runs it with uvicorn. Starlette and
uvicorn come with the ``web`` extra and are imported on first use of a name
that needs them, so that installing this plugin costs the ``flowengine``
command nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowengine import hookimpl, lazy_exports

if TYPE_CHECKING:
    import click

    from flowengine_web._app import create_app
    from flowengine_web._hooks import ON_TOKEN_WINDOW, OnToken, Render, Subject, SuccessUrl
    from flowengine_web._http import SECURITY_HEADERS
    from flowengine_web._operator_auth import OperatorHook
    from flowengine_web._operator_page import OPERATOR_CONTENT_SECURITY_POLICY
    from flowengine_web._outcome import result_kind
    from flowengine_web._pages import (
        CONTENT_SECURITY_POLICY,
        Page,
        PageKind,
        ResultKind,
        SpecLink,
        render_html,
    )
    from flowengine_web._server import WebServer

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "ON_TOKEN_WINDOW",
    "OPERATOR_CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "OnToken",
    "OperatorHook",
    "Page",
    "PageKind",
    "Render",
    "ResultKind",
    "SpecLink",
    "Subject",
    "SuccessUrl",
    "WebServer",
    "create_app",
    "flowengine_commands",
    "render_html",
    "result_kind",
]

# The public names need Starlette or uvicorn: they load on first use, not with the plugin.
__getattr__ = lazy_exports(
    __name__,
    {
        "ON_TOKEN_WINDOW": "._hooks",
        "OnToken": "._hooks",
        "Render": "._hooks",
        "Subject": "._hooks",
        "SuccessUrl": "._hooks",
        "create_app": "._app",
        "result_kind": "._outcome",
        "SECURITY_HEADERS": "._http",
        "OperatorHook": "._operator_auth",
        "OPERATOR_CONTENT_SECURITY_POLICY": "._operator_page",
        "CONTENT_SECURITY_POLICY": "._pages",
        "ResultKind": "._pages",
        "Page": "._pages",
        "PageKind": "._pages",
        "SpecLink": "._pages",
        "render_html": "._pages",
        "WebServer": "._server",
    },
)


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``flowengine web serve``."""
    from flowengine_web._cli import web

    cli.add_command(web)
