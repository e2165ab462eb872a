"""What the frontend shows: a ``Page`` describes it, ``render_html`` draws the default.

A host app that draws its own pages gets the same ``Page`` (through the
``render`` hook) and decides how it looks; what it says stays here. The
default pages are plain, accessible HTML with one inline style sheet that the
Content-Security-Policy allows by its hash: no script, no image, nothing
fetched from anywhere. Every value is escaped, the provider's text included.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Literal

import attrs
from flowengine import AccountRef, ErrorInfo, Flow

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "Page",
    "PageKind",
    "ResultKind",
    "SpecLink",
    "describe_error",
    "render_html",
]

#: The page a flow's result gets (from ``flow.outcome``; an expired flow shows ``failed``).
ResultKind = Literal["success", "denied", "failed", "pending"]
#: Every page the frontend shows: a flow's outcome, the home page, or an error without a flow.
PageKind = Literal["home", "success", "denied", "failed", "pending", "error", "not_found"]


@attrs.frozen
class SpecLink:
    """A spec on the home page: its name, what it is, and where to start it."""

    name: str
    description: str
    start_url: str


@attrs.frozen
class Page:
    """Everything a page shows; handed to the ``render`` hook before the default is drawn.

    ``error`` is the flow's error for ``denied``/``failed``, and for ``error``
    pages (a rejected callback, a store or network failure) the reason, whose
    ``code`` is stable and whose ``message`` is written for people.
    """

    kind: PageKind
    status_code: int
    title: str
    home_url: str
    spec: str | None = None
    flow: Flow | None = None
    error: ErrorInfo | None = None
    retry_url: str | None = None
    result_url: str | None = None
    specs: tuple[SpecLink, ...] = ()

    @property
    def account(self) -> AccountRef | None:
        """Whom the token acts for (Podio's ``ref``), on a success page."""
        return self.flow.account if self.flow is not None else None

    @property
    def token_fingerprint(self) -> str | None:
        """A short, non-reversible name of the token: the token itself never reaches a page."""
        return self.flow.token_fingerprint if self.flow is not None else None


# Why a callback or a start was refused, in words for the person in front of the page.
_REASONS: dict[str, str] = {
    "state_missing": "The answer from the provider does not say which sign-in it belongs to.",
    "state_unknown": "This sign-in is not one this site started, or it is too old and was cleaned up.",
    "state_used": "This sign-in was already completed with a different answer.",
    "flow_expired": "This sign-in took too long and expired.",
    "session_mismatch": (
        "This sign-in was started in another browser, or this browser lost its session cookie."
    ),
    "wrong_provider": "This answer belongs to a sign-in with another provider.",
    "issuer_mismatch": "The answer names another authorization server than the one this site uses.",
    "repeated_parameter": "The answer from the provider is malformed (a parameter is repeated).",
    "callback_invalid": "The answer from the provider is malformed.",
    "store_unavailable": "The sign-in could not be saved or read right now.",
    "store_conflict": "The sign-in changed while it was being completed.",
    "store_corrupt": "The sign-in could not be read back.",
    "transport_error": "The provider could not be reached.",
    "transport_timeout": "The provider took too long to answer.",
    "redirect_uri_invalid": "This site is not set up to receive the provider's answer at this address.",
    "config_invalid": "This site is not set up correctly for this provider.",
    "connection_pinned": (
        "This sign-in link chooses a provider or tenant that only this site's configuration may set."
    ),
    "connection_invalid": "This sign-in link names a tenant or region this provider does not accept.",
    "token_hook_failed": "The provider authorized this site, but the site could not save the result.",
}


def describe_error(code: str) -> str:
    """A sentence for people about an error code (a generic one for codes it does not know)."""
    return _REASONS.get(code, "Something went wrong while completing the sign-in.")


_STYLE = """
body { font: 1rem/1.5 system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fff; }
main { max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
code { font-family: ui-monospace, monospace; background: #f1f1f1; padding: 0 .2rem; }
a { color: #0b57d0; }
a:focus-visible { outline: 3px solid #0b57d0; outline-offset: 2px; }
.error { border-left: 4px solid #b3261e; padding-left: .75rem; }
.ok { border-left: 4px solid #146c2e; padding-left: .75rem; }
ul { padding-left: 1.2rem; }
li { margin: .5rem 0; }
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode("ascii")

#: Nothing but the inline style sheet above; no script, no frame, no form, no base.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _link(href: str, text: str, label: str | None = None) -> str:
    aria = f' aria-label="{_e(label)}"' if label else ""
    return f'<a href="{_e(href)}"{aria}>{_e(text)}</a>'


def _body(page: Page) -> str:
    flow, error = page.flow, page.error
    spec = page.spec or ""
    if page.kind == "home":
        items = "\n".join(
            f"<li><strong>{_e(link.name)}</strong>: {_e(link.description)}<br>"
            f"{_link(link.start_url, 'Try to authorize', f'Try to authorize with {link.name}')}</li>"
            for link in page.specs
        )
        return f"<p>Connect an account with one of these providers.</p>\n<ul>\n{items}\n</ul>"
    if page.kind == "success" and flow is not None:
        rows = [("Provider", _e(spec)), ("Account", f"<code>{_e(flow.account)}</code>")]
        rows.append(("Token", f"<code>{_e(flow.token_fingerprint)}</code> (a fingerprint, not the token)"))
        if flow.granted_scope:
            rows.append(("Scope", f"<code>{_e(flow.granted_scope)}</code>"))
        if flow.missing_scopes:
            rows.append(("Not granted", f"<code>{_e(' '.join(sorted(flow.missing_scopes)))}</code>"))
        table = "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
        return (
            f'<p class="ok" role="status">{_e(spec)} authorized this site as '
            f"<strong>{_e(flow.account)}</strong>.</p>\n<dl>\n{table}\n</dl>"
        )
    if page.kind == "pending":
        return (
            '<p role="status">The provider answered; the sign-in is still being completed.</p>\n'
            f"<p>{_link(page.result_url or '', 'Check again')}</p>"
        )
    if page.kind == "not_found":
        return "<p>There is nothing here.</p>"
    said = "The sign-in did not complete."
    if error is not None:
        said = error.description or error.message if page.kind == "denied" else error.message
    said = said[:1].upper() + said[1:]
    code = f"\n<p>Error code: <code>{_e(error.code)}</code></p>" if error is not None else ""
    return f'<p class="error" role="alert">{_e(said)}</p>{code}'


def render_html(page: Page) -> str:
    """The default HTML of a page: escaped, script-free, styled by the one hashed style sheet."""
    links = []
    if page.retry_url:
        links.append(_link(page.retry_url, "Retry", f"Retry authorizing with {page.spec}"))
    if page.kind != "home":
        links.append(_link(page.home_url, "Home"))
    nav = f"\n<p>{' · '.join(links)}</p>" if links else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(page.title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<main>
<h1>{_e(page.title)}</h1>
{_body(page)}{nav}
</main>
</body>
</html>
"""
