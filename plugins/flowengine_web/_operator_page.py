"""The operator page's HTML, its first-party style sheet and script, and the CSP that allows them.

The live part (``<div id="live">``) is also served alone (``/operator/live``):
the page's script fetches it every few seconds and swaps it in, so the page
refreshes without a reload; without JavaScript a ``<noscript>`` meta refresh
reloads the whole page. Nothing is fetched from anywhere but this app. Every
value is escaped; tokens appear as fingerprints only.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from importlib.resources import files
from urllib.parse import urlencode

from flowengine import SpecStatus, Status, TokenHealth, TokenRow

from flowengine_web._operator_svg import failure_chart, machine_diagram
from flowengine_web._pages import CONTENT_SECURITY_POLICY

__all__ = [
    "OPERATOR_CONTENT_SECURITY_POLICY",
    "OPERATOR_SCRIPT",
    "OPERATOR_STYLE",
    "live_html",
    "page_html",
    "refused_html",
]

#: The frontend's CSP, plus only what the operator page needs from 'self': its style sheet, its
#: script, the fetch of its live part, and its sign-in and sign-out forms.
OPERATOR_CONTENT_SECURITY_POLICY = (
    CONTENT_SECURITY_POLICY.replace("style-src ", "style-src 'self' ")
    .replace("form-action 'none'", "form-action 'self'")
    .replace("default-src 'none';", "default-src 'none'; script-src 'self'; connect-src 'self';")
)

_HEALTH_WORDS = {
    TokenHealth.FRESH: "fresh",
    TokenHealth.EXPIRING: "expiring",
    TokenHealth.REFRESHABLE: "expired, refreshable",
    TokenHealth.EXPIRED: "expired",
    TokenHealth.DEAD: "dead",
    TokenHealth.UNSAVED: "unsaved",
}

#: The page's style sheet and script: files of this package, served by the app itself.
OPERATOR_STYLE = (files("flowengine_web") / "static" / "operator.css").read_text(encoding="utf-8")
OPERATOR_SCRIPT = (files("flowengine_web") / "static" / "operator.js").read_text(encoding="utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    delta = at - now
    span = abs(delta)
    if span >= 86400:
        text = f"{span / 86400:.1f} d"
    elif span >= 3600:
        text = f"{span / 3600:.1f} h"
    else:
        text = f"{span / 60:.0f} min" if span >= 120 else f"{span:.0f} s"
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(at))
    said = f"in {text}" if delta >= 0 else f"{text} ago"
    return f'<time datetime="{_e(stamp)}" title="{_e(stamp)}">{said}</time>'


def _counts(spec: SpecStatus) -> str:
    items = []
    for health, word in _HEALTH_WORDS.items():
        n = spec.tokens.count(health)
        shown = "unknown" if n is None else str(n)
        items.append(
            f'<div data-health="{health}" data-count="{shown}"><dt>{_e(word)}</dt><dd>{shown}</dd></div>'
        )
    return f'<dl class="counts">{"".join(items)}</dl>'


def _token_row(row: TokenRow, now: float, start_urls: Mapping[str, str]) -> str:
    action = ""
    if row.health is TokenHealth.DEAD and row.key in start_urls:
        href = _e(start_urls[row.key])
        action = f'<a href="{href}" title="Send this link to the account owner">Start a new login</a>'
    died = _when(row.dead_at, now) if row.dead_at is not None else ""
    return (
        f'<tr data-key="{_e(row.key)}" data-health="{row.health}">'
        f'<td class="health-{row.health}">{_e(_HEALTH_WORDS[row.health])}</td>'
        f"<td><code>{_e(row.account)}</code></td>"
        f"<td><code>{_e(row.key)}</code></td><td><code>{_e(row.fingerprint)}</code></td>"
        f"<td>{_when(row.expires_at, now)}</td><td>{died}</td><td>{_when(row.obtained_at, now)}</td>"
        f"<td>{action}</td></tr>"
    )


def _tokens(spec: SpecStatus, now: float, start_urls: Mapping[str, str]) -> str:
    view = spec.tokens
    parts = [f"<h3>Tokens</h3>{_counts(spec)}"]
    if view.unsaved is None:
        parts.append('<p class="quiet">Unsaved tokens of other processes are not known here.</p>')
    if view.rows:
        more = f" ({view.not_shown} more not shown)" if view.not_shown else ""
        rows = "".join(_token_row(r, now, start_urls) for r in view.rows)
        parts.append(
            f'<p class="quiet">Needing attention{_e(more)}:</p><div class="scroll"><table class="tokens">'
            "<thead><tr><th>Health</th><th>Account</th><th>Key</th><th>Fingerprint</th><th>Expires</th>"
            "<th>Found dead</th><th>Last refresh</th><th></th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
    return "".join(parts)


def _spec(spec: SpecStatus, status: Status, start_urls: Mapping[str, str], window: str) -> str:
    ended = ", ".join(f"{n} {outcome}" for outcome, n in spec.outcomes.items()) or "none ended"
    pending = sum(s.pending or 0 for s in spec.states)
    known = "" if spec.machine_known else ' <span class="quiet">(spec not served here: as counted)</span>'
    parts = [f'<section class="spec" data-spec="{_e(spec.name)}"><h2>{_e(spec.name)}{known}</h2>']
    if spec.states:
        parts.append(
            f'<p data-summary="{_e(spec.name)}">{spec.started} started and {_e(ended)}'
            f" in the last {_e(window)};"
            f" {pending} pending now.</p>"
            f'<div class="scroll">{machine_diagram(spec)}</div>'
            f"<h3>Errors per hour (failures and denials), last {_e(window)}</h3>{failure_chart(spec)}"
        )
    parts.append(_tokens(spec, status.now, start_urls))
    parts.append("</section>")
    return "".join(parts)


def live_html(status: Status, *, refresh: float, src: str, start_urls: Mapping[str, str], window: str) -> str:
    """The part of the page that refreshes: every spec's section, with when it was read."""
    read_at = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(status.now))
    specs = "".join(_spec(s, status, start_urls, window) for s in status.specs)
    return (
        f'<div id="live" data-refresh="{refresh:g}" data-src="{_e(src)}" data-read-at="{status.now!r}">'
        f'<p class="meta">Read at {_e(read_at)}; refreshed every {refresh:g} s.'
        f' <span id="refresh-note" role="status"></span></p>{specs or "<p>No specs served.</p>"}</div>'
    )


def _document(title: str, body: str, *, base: str, head: str = "") -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(title)}</title>
<link rel="stylesheet" href="{_e(base)}/operator/operator.css">{head}
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""


def page_html(live: str, *, base: str, refresh: float, windows: Mapping[str, str], signs_out: bool) -> str:
    """The whole page: the live part, links to other windows, the script, and a no-script fallback."""
    links = " · ".join(f'<a href="{_e(url)}">{_e(name)}</a>' for name, url in windows.items())
    sign_out = (
        f'<form class="inline" method="post" action="{_e(base)}/operator/sign-out">'
        '<button type="submit">Sign out</button></form>'
        if signs_out
        else ""
    )
    head = (
        f'\n<script src="{_e(base)}/operator/operator.js" defer></script>'
        f'\n<noscript><meta http-equiv="refresh" content="{max(5, round(refresh))}"></noscript>'
    )
    body = f'<h1>Operator</h1>\n<p class="meta">Window: {links} {sign_out}</p>\n{live}'
    return _document("Operator · flowengine", body, base=base, head=head)


def refused_html(*, base: str, signs_in: bool, wrong: bool) -> str:
    """The page an unadmitted request gets: a sign-in form when a secret is set, else just a refusal."""
    if not signs_in:
        body = "<h1>Not allowed</h1>\n<p>This page is for the site's operators.</p>"
        return _document("Not allowed · flowengine", body, base=base)
    said = '<p role="alert" class="health-dead">That is not the operator secret.</p>' if wrong else ""
    body = (
        f"<h1>Operator sign-in</h1>\n{said}"
        f'<form method="post" action="{_e(base)}/operator/sign-in">'
        '<p><label for="secret">Operator secret</label><br>'
        '<input id="secret" name="secret" type="password" autocomplete="current-password" required></p>'
        '<p><button type="submit">Sign in</button></p></form>'
    )
    return _document("Operator sign-in · flowengine", body, base=base)


def start_url(base: str, url_name: str, connection: Mapping[str, str]) -> str:
    """The URL that starts a new flow of ``url_name`` with a token's connection values (its tenant)."""
    query = f"?{urlencode(dict(connection))}" if connection else ""
    return f"{base}/auth/{url_name}{query}"
