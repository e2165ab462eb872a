"""Play the person at the sandbox's consent page, as a browser test would."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
from attrs import define, field

from flowengine_sandbox.errors import SandboxError

__all__ = ["consent"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@define
class _Form:
    action: str
    method: str
    fields: dict[str, str] = field(factory=dict)
    decisions: set[str] = field(factory=set)  # values of the buttons named `decision`


class _FormParser(HTMLParser):
    """Collect every form of a page: its action, method, named inputs and decisions."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._form: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = _Form(values.get("action", ""), values.get("method", "get").lower())
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and values.get("name"):
            if values.get("type", "text").lower() not in ("submit", "button", "image", "reset"):
                self._form.fields[values["name"]] = values.get("value", "")
        elif tag == "button" and values.get("name") == "decision":
            self._form.decisions.add(values.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


async def consent(client: httpx.AsyncClient, authorization_url: str, *, approve: bool) -> str:
    """Grant or deny at the sandbox; return the callback URL it redirects to (not followed)."""
    page = await client.get(authorization_url, follow_redirects=False)
    if page.status_code in _REDIRECTS:
        # The sandbox decides by itself in its `approve` and `deny` consent modes.
        return _location(page)
    if page.status_code != 200 or "text/html" not in page.headers.get("content-type", ""):
        raise SandboxError(f"expected the consent page, got {_describe(page)}")
    decision = "grant" if approve else "deny"
    parser = _FormParser()
    parser.feed(page.text)
    parser.close()
    form = next((form for form in parser.forms if decision in form.decisions), None)
    if form is None or form.method != "post":
        raise SandboxError(f"the consent page has no POST form with a {decision!r} button")
    answer = await client.post(
        page.url.join(form.action),
        data={**form.fields, "decision": decision},
        follow_redirects=False,
    )
    if answer.status_code not in _REDIRECTS:
        raise SandboxError(f"expected a redirect after the decision, got {_describe(answer)}")
    return _location(answer)


def _location(response: httpx.Response) -> str:
    location: str = response.headers.get("location", "")
    if not location:
        raise SandboxError(f"{response.status_code} redirect without a Location header")
    return location


def _describe(response: httpx.Response) -> str:
    # Name the status and, for an error envelope, its error: never echo the body.
    description = f"{response.status_code} {response.headers.get('content-type', '')}".strip()
    try:
        envelope: object = response.json()
    except ValueError:
        return description
    if isinstance(envelope, dict) and isinstance(envelope.get("error_description"), str):
        description += f": {envelope['error']}: {envelope['error_description']}"
    return description
