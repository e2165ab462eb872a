"""SECURITY.md 28: what a provider echoes back of a request never shows the secrets the request carried.

The token endpoint here is a handler transport that answers every request with the request itself:
its body as sent, JSON-escaped, percent-encoded, its fields one by one, its ``Authorization``
header, and a secret cut off half way (as a provider that truncates its text would). Each secret
the engine sent (client secret, code, PKCE verifier, refresh token, password, app token, the token
being revoked, the Basic credentials) is then looked for in ``flow.error``, the stored flow, the
exception, every log line at DEBUG, ``token.extra``, and the web frontend's failure page.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

import flowengine as fe
import httpx
import pytest

from flowengine_web import create_app
from tests.security.helpers import json_response, podio_data, query_of, token_body, with_pkce

SECRET = "cs-SCRUB-client+secret/0123456789=="
CODE = "CODE-scrub-0123456789abcdef"
REFRESH = "rt-SCRUB-refresh-token-0123456789"
ACCESS = "at-SCRUB-access-token-0123456789"
PASSWORD = "pw SCRUB&pass=word/42"
APP_TOKEN = "apptoken-SCRUB-0123456789"
REDIRECT = "https://app.example.com/callback"


class EchoEndpoint:
    """A token endpoint that echoes each request into its answer; ``answers`` go first, in order."""

    def __init__(self, *answers: fe.HttpResponse, status: int = 400, in_token: bool = False) -> None:
        self.answers = list(answers)
        self.status = status
        self.in_token = in_token
        self.sent: list[fe.HttpRequest] = []

    def echo(self, request: fe.HttpRequest) -> str:
        text = request.body.decode()
        try:
            fields: dict[str, Any] = json.loads(text)
        except ValueError:
            fields = dict(parse_qsl(text))
        values = [str(v) for v in fields.values()]
        authorization = request.headers.get("authorization", "")
        pieces = [text, json.dumps(text), quote(text, safe=""), urlencode(fields), authorization, *values]
        pieces += [html.escape(v) for v in values] + [v[: len(v) // 2 + 4] for v in values if len(v) > 20]
        return " | ".join(pieces)

    async def send(self, request: fe.HttpRequest) -> fe.HttpResponse:
        self.sent.append(request)
        if self.answers:
            return self.answers.pop(0)
        echo = self.echo(request)
        if self.in_token:
            return json_response(
                token_body(access_token=ACCESS, refresh_token=REFRESH, debug=echo, sent=[echo])
            )
        body = {
            "error": "invalid_request",
            "error_description": f"you sent: {echo}",
            "request": {"echo": echo},
        }
        return json_response(body, status=self.status)

    async def aclose(self) -> None:
        return None


def _forms(secret: str) -> set[str]:
    """How a leaked secret could look: as is, percent-encoded, escaped, or its first half."""
    return {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1], html.escape(secret)}


def assert_clean(texts: list[str], secrets: list[str]) -> None:
    assert texts, "nothing was captured: the test proves nothing"
    for text in texts:
        for secret in secrets:
            for form in _forms(secret) | {secret[:12]}:
                assert form not in text, f"{form[:14]!r}… leaked into {text[:200]!r}"


@contextlib.contextmanager
def debug_logs() -> Iterator[list[str]]:
    """Every log record of every logger, at DEBUG, as text."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _texts(error: BaseException | None = None, flow: fe.Flow | None = None) -> list[str]:
    texts: list[str] = []
    if error is not None:
        texts += [str(error), repr(error)]
        if isinstance(error, fe.ProviderError):
            texts += [json.dumps(error.body), error.description or ""]
    if flow is not None and flow.error is not None:
        texts += [repr(flow.error), flow.error.message, flow.error.description or "", flow.error.reason or ""]
    return texts


def _with_revocation() -> dict[str, Any]:
    data = podio_data()
    data["revocation"] = {
        "endpoint": "token_form",
        "encoding": "form",
        "client_auth": "basic",
        "params": {"token": "{token}", "token_type_hint": "{token_type_hint}"},
    }
    return data


def _spec(basic: bool) -> fe.FlowSpec:
    data = podio_data()
    with_pkce(data)
    if basic:
        for grant in data["grants"].values():
            grant.update(client_auth="basic", encoding="form")
            grant["params"].pop("client_secret", None)
    return fe.load_spec(data)


def _basic(client_id: str) -> list[str]:
    credentials = base64.b64encode(f"{client_id}:{quote_plus(SECRET)}".encode()).decode()
    return [credentials, f"Basic {credentials}"]


@pytest.mark.parametrize("basic", [False, True], ids=["secret-in-json-body", "basic-auth-form"])
async def test_sec28_an_exchange_whose_error_echoes_the_request_keeps_no_secret(
    basic: bool, tmp_path: Any
) -> None:
    client = fe.Client("scrub-client", SECRET, REDIRECT)
    store = f"sqlite://{tmp_path / 'scrub.db'}"
    with debug_logs() as logs:
        async with fe.AsyncEngine(
            _spec(basic), client=client, transport=EchoEndpoint(), store=store
        ) as engine:
            flow = await engine.start()
            done = await engine.callback(
                {"state": query_of(flow.authorization_url or "")["state"], "code": CODE}
            )
            stored = await engine.get(done.id)
    assert done.state == "failed" and done.error is not None and done.error.code == "provider_error"
    assert "you sent" in (done.error.description or "")  # the provider's words are kept, minus the secrets
    secrets = [SECRET, CODE, flow.code_verifier or "", *(_basic(client.client_id) if basic else [])]
    assert_clean([*_texts(None, done), *_texts(None, stored), *logs], secrets)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in secrets:
        assert secret.encode() not in raw and quote(secret, safe="").encode() not in raw


async def test_sec28_a_refresh_and_a_revoke_whose_errors_echo_the_request_raise_no_secret() -> None:
    spec = fe.load_spec("podio")
    endpoint = EchoEndpoint(json_response(token_body(access_token=ACCESS, refresh_token=REFRESH)))
    client = fe.Client("scrub-client", SECRET, REDIRECT)
    with debug_logs() as logs:
        async with fe.AsyncEngine(
            spec, client=client, transport=endpoint, retry=fe.RetryPolicy(attempts=1)
        ) as engine:
            flow = await engine.start()
            done = await engine.callback(
                {"state": query_of(flow.authorization_url or "")["state"], "code": CODE}
            )
            token = await engine.token_for(done)
            assert token is not None
            with pytest.raises(fe.ProviderError) as refreshed:
                await engine.refresh(token)
    revocable = fe.load_spec(_with_revocation())
    with debug_logs() as more_logs:
        async with fe.AsyncEngine(revocable, client=client, transport=EchoEndpoint(status=400)) as engine:
            with pytest.raises(fe.ProviderError) as revoked:
                await engine.revoke(token)
    texts = [*_texts(refreshed.value), *_texts(revoked.value), *logs, *more_logs]
    assert_clean(texts, [SECRET, CODE, REFRESH, ACCESS, *_basic(client.client_id)])


@pytest.mark.parametrize(
    ("spec", "grant", "inputs", "secrets"),
    [
        ("podio-password", "password", {"username": "svc@example.com", "password": PASSWORD}, [PASSWORD]),
        ("podio-app", "app", {"app_id": "4711", "app_token": APP_TOKEN}, [APP_TOKEN]),
    ],
)
async def test_sec28_a_grant_whose_error_echoes_the_request_raises_no_secret(
    spec: str, grant: str, inputs: dict[str, str], secrets: list[str]
) -> None:
    client = fe.Client("scrub-client", SECRET)
    with debug_logs() as logs:
        async with fe.AsyncEngine(spec, client=client, transport=EchoEndpoint(status=401)) as engine:
            with pytest.raises(fe.ProviderError) as caught:
                await engine.grant(grant, inputs)
    assert caught.value.code == "unauthorized"
    assert_clean([*_texts(caught.value), *logs], [SECRET, *secrets])


async def test_sec28_a_token_answer_that_echoes_the_request_keeps_no_secret_in_extra() -> None:
    client = fe.Client("scrub-client", SECRET, REDIRECT)
    async with fe.AsyncEngine(_spec(False), client=client, transport=EchoEndpoint(in_token=True)) as engine:
        flow = await engine.start()
        done = await engine.callback({"state": query_of(flow.authorization_url or "")["state"], "code": CODE})
        token = await engine.token_for(done)
    assert token is not None and token.access_token == ACCESS and "debug" in token.extra
    assert_clean([json.dumps(token.extra)], [SECRET, CODE, flow.code_verifier or ""])


async def test_sec28_the_web_failure_page_shows_the_providers_words_without_the_secrets() -> None:
    client = fe.Client("scrub-client", SECRET)
    async with fe.AsyncEngine(_spec(False), client=client, transport=EchoEndpoint()) as engine:
        app = create_app(
            engine, secret_key="scrub-tests-web-secret-0123456789", base_url="https://app.example.com"
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://app.example.com") as browser:
            started = await browser.get("/auth/podio")
            state = query_of(started.headers["location"])["state"]
            pages = []
            for accept in ("text/html", "application/json"):
                answer = await browser.get(
                    "/auth/podio/callback", params={"state": state, "code": CODE}, headers={"accept": accept}
                )
                if answer.status_code == 303:
                    answer = await browser.get(answer.headers["location"], headers={"accept": accept})
                pages.append(answer.text)
    assert "you sent" in pages[0] and "Authorization failed" in pages[0]
    assert_clean(pages, [SECRET, CODE])


async def test_sec28_an_error_callback_does_not_show_its_own_state_or_code() -> None:
    """The callback's ``error_description`` is provider text too: it may repeat the ``state``."""
    async with fe.AsyncEngine(
        "podio", client=fe.Client("cid", SECRET, REDIRECT), transport=EchoEndpoint()
    ) as engine:
        flow = await engine.start()
        state = query_of(flow.authorization_url or "")["state"]
        description = f"state {state} was refused; we also saw {state[:20]}"
        done = await engine.callback(
            {"state": state, "error": "server_error", "error_description": description}
        )
    assert done.error is not None and "was refused" in (done.error.description or "")
    assert_clean(_texts(None, done), [state])
