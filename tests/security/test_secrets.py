"""SECURITY.md 13 and 14: no secret in logs, errors, reprs, observers, CLI output or web pages; no access log.

Every path runs with every logger at DEBUG and an observer on every hook; the test keeps each
secret it sees (access and refresh tokens, codes, verifiers, the client secret, passwords,
``state`` and every ``Authorization`` header value) and greps everything that was shown for
them. The harness's own steps (the sandbox's consent page, playing the person) are not
captured: they are the provider's side, not flowengine's.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import flowengine as fe
import httpx
import pytest
from flowengine import _plugins as plugins

from flowengine_sandbox.faults import Fault
from flowengine_sandbox.plugin import PodioSandbox
from flowengine_web import create_app
from tests.conftest import SandboxFixture
from tests.security.helpers import podio_variant, query_of, with_pkce

WEB_SECRET = "security-tests-web-key-0123456789abcdef"
#: The test browser's origin: the app itself is told its public origin is 127.0.0.1:8000.
BROWSER = "http://browser.test"
DEBUG_ENTRY = (
    "import logging; logging.basicConfig(level=logging.DEBUG); from flowengine.cli import main; main()"
)


class Leaks(logging.Handler):
    """Collects everything flowengine shows, and every secret it was given, and matches the two."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.secrets: set[str] = set()
        self.shown: list[tuple[str, str]] = []
        self.capturing = True

    # --- what is secret -----------------------------------------------------------------------

    def secret(self, *values: str | None) -> None:
        for value in values:
            if value:
                self.secrets.add(value)

    def token(self, token: fe.Token | None) -> None:
        if token is not None:
            self.secret(token.access_token, token.refresh_token, token.authorization_header())

    def callback(self, url: str) -> None:
        query = query_of(url)
        self.secret(query.get("code"), query.get("state"))

    def started(self, flow: fe.Flow) -> fe.Flow:
        self.secret(flow.code_verifier, query_of(flow.authorization_url or "").get("state"))
        return flow

    # --- what was shown -----------------------------------------------------------------------

    def show(self, where: str, *texts: object) -> None:
        for text in texts:
            self.shown.append((where, text if isinstance(text, str) else repr(text)))

    def error(self, where: str, error: BaseException) -> None:
        self.show(where, str(error), repr(error), "".join(traceback.format_exception(error)))

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        # The test's browser logs the URLs it requests (httpx, INFO): the person's side, not ours.
        if self.capturing and not (record.name == "httpx" and BROWSER in message):
            self.shown.append((f"log {record.name}", message))

    @contextlib.contextmanager
    def harness(self) -> Iterator[None]:
        """The sandbox playing the person: its own HTTP client's logs are not flowengine's."""
        self.capturing = False
        try:
            yield
        finally:
            self.capturing = True

    def assert_clean(self) -> None:
        assert self.shown, "nothing was captured: the test proves nothing"
        secrets = {s for s in self.secrets if len(s) >= 8}
        hits = [(where, s) for where, text in self.shown for s in secrets if s in text]
        assert not hits, f"secrets shown: {[(w, s[:12] + '…') for w, s in hits][:10]}"


class Observer:
    """A plugin on every observing hook, showing what it receives."""

    def __init__(self, leaks: Leaks) -> None:
        self.leaks = leaks

    @fe.hookimpl
    def flowengine_transition(self, flow: fe.Flow, event: str, source: str, dest: str) -> None:
        self.leaks.show("transition observer", flow, str(flow), event, source, dest, flow.error)

    @fe.hookimpl
    def flowengine_present(self, flow: fe.Flow, step: str, detail: Mapping[str, Any]) -> None:
        self.leaks.show("present hook", flow, step, dict(detail))


@pytest.fixture
def leaks() -> Iterator[Leaks]:
    """Every logger at DEBUG into a ``Leaks``; levels restored afterwards."""
    collector = Leaks()
    collector.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    logging.getLogger().addHandler(collector)
    try:
        yield collector
    finally:
        logging.getLogger().removeHandler(collector)
        for logger, level, disabled in levels:
            logger.setLevel(level)
            logger.disabled = disabled


@pytest.fixture
def observed(leaks: Leaks) -> Any:
    """A plugin manager with every installed plugin and the observer."""
    pm = plugins.new_plugin_manager()
    pm.register(Observer(leaks), name="security-observer")
    return pm


def _basic(client: fe.Client) -> str:
    pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


@contextlib.asynccontextmanager
async def _engine(
    sandbox: SandboxFixture, pm: Any, spec: fe.FlowSpec | str = "podio", **options: Any
) -> AsyncIterator[fe.AsyncEngine]:
    spec = fe.load_spec(spec)
    async with fe.AsyncEngine(
        spec,
        client=options.pop("client", sandbox.client),
        endpoints=PodioSandbox(spec, sandbox.server.url).endpoints,
        plugin_manager=pm,
        retry=fe.RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01),
        transport_config=fe.TransportConfig(timeout=1.0, max_response_bytes=64 * 1024),
        **options,
    ) as engine:
        yield engine


async def _authorized(engine: fe.AsyncEngine, sandbox: SandboxFixture, leaks: Leaks, **start: Any) -> str:
    flow = leaks.started(await engine.start(**start))
    engine.present(flow, "authorize", where=(flow.authorization_url or "").split("?")[0])
    with leaks.harness():
        callback = await sandbox.consent(flow.authorization_url)
    leaks.callback(callback)
    return callback


async def _refused(leaks: Leaks, where: str, call: Any) -> None:
    try:
        result = await call
    except fe.FlowError as exc:
        leaks.error(where, exc)
    else:
        leaks.show(where, result)


@pytest.mark.slow
async def test_sec13_every_engine_path_at_debug_shows_no_secret(
    sandbox: SandboxFixture, leaks: Leaks, observed: Any, tmp_path: Path
) -> None:
    leaks.secret(sandbox.client.client_secret, _basic(sandbox.client))
    store = f"sqlite://{tmp_path / 'tokens.db'}"
    async with _engine(sandbox, observed, store=store) as engine:
        # The granted flow, a replay, a refresh with rotation, reading back.
        callback = await _authorized(engine, sandbox, leaks, scope="user:read", session="browser-a")
        done = await engine.callback(callback, session="browser-a")
        token = await engine.token_for(done)
        leaks.token(token)
        assert token is not None and done.state == "exchanged"
        engine.present(done, "result")
        leaks.show(
            "results", done, await engine.callback(callback, session="browser-a"), token, token.fingerprint
        )
        fresh = await engine.refresh(token)
        leaks.token(fresh)
        leaks.show("reading", fresh, await engine.flows(), await engine.tokens(), await engine.get(done.id))
        # Rejected callbacks.
        pending = await _authorized(engine, sandbox, leaks, session="browser-a")
        query = query_of(pending)
        for where, call in [
            ("state_missing", engine.callback({"code": query["code"]})),
            ("state_unknown", engine.callback({**query, "state": query["state"] + "x"})),
            ("session_mismatch", engine.callback(pending, session="browser-b")),
            ("state_used", engine.callback({"state": query_of(callback)["state"], "code": query["code"]})),
            ("callback_invalid", engine.callback(pending + "&code=%ff")),
            ("flow_unknown", engine.exchange("no-such-flow")),
            ("token_unknown", engine.refresh("podio:user:404")),
        ]:
            await _refused(leaks, where, call)
        # Denied, provider error, missing code: outcomes, not exceptions.
        for change in (
            {"error": "access_denied", "code": ""},
            {"error": "server_error", "code": ""},
            {"code": ""},
        ):
            other = await _authorized(engine, sandbox, leaks)
            leaks.show("outcome", await engine.callback({**query_of(other), **change}))
        # Every fault of the token endpoint, during an exchange.
        for fault in [
            Fault("status", status=503, times=1),
            Fault("rate_limit", retry_after=1, times=1),
            Fault("html", status=200, times=1),
            Fault(
                "respond",
                stage="after",
                body='{"error": "invalid_request", "error_description": "no"}',
                status=400,
                times=1,
            ),
            Fault("reset", times=1),
            Fault("read_timeout", delay=5, times=1),
            Fault("endless", times=1),
            Fault("content_type", content_type="text/plain", times=1),
        ]:
            sandbox.settings.faults.add(fault)
            outcome = await engine.callback(await _authorized(engine, sandbox, leaks))
            leaks.token(await engine.token_for(outcome))
            leaks.show(f"fault {fault.kind}", outcome, outcome.error)
        # A spent code, a wrong client secret, a dead refresh token.
        reused = await _authorized(engine, sandbox, leaks)
        leaks.show(
            "reused code", await engine.callback({**query_of(reused), "code": query_of(callback)["code"]})
        )
        sandbox.settings.rotate_refresh_tokens = True
        stale = await engine.get_token(token.key)
        assert stale is not None
        sandbox.server.state.reset()
        await _refused(leaks, "invalid_grant", engine.refresh(stale))
        await _refused(leaks, "dead", engine.refresh(stale.key))
    wrong = fe.Client(
        sandbox.client.client_id, "wrong-client-secret", sandbox.client.redirect_uri, "127.0.0.1"
    )
    leaks.secret(wrong.client_secret, _basic(wrong))
    async with _engine(sandbox, observed, client=wrong) as engine:
        leaks.show("invalid_client", await engine.callback(await _authorized(engine, sandbox, leaks)))
    leaks.assert_clean()


async def test_sec13_pkce_basic_auth_and_the_grants_show_no_secret(
    sandbox: SandboxFixture, leaks: Leaks, observed: Any
) -> None:
    settings = sandbox.settings
    leaks.secret(sandbox.client.client_secret, _basic(sandbox.client), settings.user.password)
    leaks.secret(*(app.app_token for app in settings.apps.values()))

    def basic_and_pkce(data: dict[str, Any]) -> None:
        with_pkce(data)
        for grant in data["grants"].values():
            grant.update(client_auth="basic", encoding="form", endpoint="token_form")
            grant["params"].pop("client_secret")

    async with _engine(sandbox, observed, podio_variant(basic_and_pkce)) as engine:
        done = await engine.callback(await _authorized(engine, sandbox, leaks))
        assert done.state == "exchanged"
        leaks.token(await engine.token_for(done))
        leaks.show("pkce", done)
        attacker = leaks.started(await engine.start())
        stolen = await _authorized(engine, sandbox, leaks)
        injected = {
            "state": query_of(attacker.authorization_url or "")["state"],
            "code": query_of(stolen)["code"],
        }
        leaks.show("code injection", await engine.callback(injected))
    for spec, inputs in [
        ("podio-password", {"username": settings.user.email, "password": settings.user.password}),
        ("podio-password", {"username": settings.user.email, "password": "wrong-password-123"}),
        ("podio-app", {"app_id": "2002", "app_token": "sandbox-app-token"}),
        ("podio-app", {"app_id": "2002", "app_token": "wrong-app-token-123"}),
    ]:
        leaks.secret(inputs.get("password"), inputs.get("app_token"))
        async with _engine(sandbox, observed, spec) as engine:
            try:
                token = await engine.grant(spec.removeprefix("podio-"), inputs)
            except fe.FlowError as exc:
                leaks.error(f"{spec} grant", exc)
            else:
                leaks.token(token)
                leaks.show(f"{spec} grant", token, await engine.tokens())
    leaks.assert_clean()


async def test_sec13_web_pages_show_no_secret(sandbox: SandboxFixture, leaks: Leaks, observed: Any) -> None:
    leaks.secret(sandbox.client.client_secret, _basic(sandbox.client))
    async with _engine(sandbox, observed) as engine:
        app = create_app(engine, secret_key=WEB_SECRET, base_url="http://127.0.0.1:8000")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BROWSER) as browser:
            pages: list[httpx.Response] = []
            for accept in ("text/html", "application/json"):
                started = await browser.get("/auth/podio", headers={"accept": "text/html"})
                location = started.headers["location"]
                leaks.secret(query_of(location)["state"])
                with leaks.harness():
                    callback = await sandbox.consent(location)
                leaks.callback(callback)
                first = await browser.get(
                    "/auth/podio/callback?" + callback.split("?", 1)[1], headers={"accept": accept}
                )
                pages.append(first)
                if first.status_code == 303:
                    pages.append(await browser.get(first.headers["location"], headers={"accept": accept}))
                replay = await browser.get(
                    "/auth/podio/callback?" + callback.split("?", 1)[1], headers={"accept": accept}
                )
                pages.append(replay)
                forged = {**query_of(callback), "state": "forged-state-value"}
                pages.append(
                    await browser.get("/auth/podio/callback?" + urlencode(forged), headers={"accept": accept})
                )
                denied = await browser.get("/auth/podio")
                with leaks.harness():
                    no = await sandbox.consent(denied.headers["location"], approve=False)
                pages.append(
                    await browser.get(
                        "/auth/podio/callback?" + no.split("?", 1)[1], headers={"accept": accept}
                    )
                )
            for token in await engine.tokens():
                leaks.token(token)
            for page in pages:
                headers = {k: v for k, v in page.headers.items() if k != "set-cookie"}
                leaks.show(f"web {page.request.url.path} {page.status_code}", page.text, headers)
    leaks.assert_clean()


def _cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DEBUG_ENTRY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


_WAITING = re.compile(r"(http://127\.0\.0\.1:\d+/callback)")
_AUTHORIZE = re.compile(r"(https?://\S+/oauth/authorize\?\S+)")


def _spawn(
    args: list[str], env: Mapping[str, str], *patterns: re.Pattern[str]
) -> tuple[subprocess.Popen[str], list[str], list[str]]:
    """Start ``flowengine ARGS`` at DEBUG and read its output until each pattern matched once.

    Returns the process, the lines read so far and the first group of each pattern.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", DEBUG_ENTRY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    assert process.stdout is not None
    seen: list[str] = []
    found: list[str | None] = [None] * len(patterns)
    while None in found:
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise AssertionError("".join(seen))
        seen.append(line)
        for i, pattern in enumerate(patterns):
            match = pattern.search(line)
            if found[i] is None and match:
                found[i] = match.group(1)
    return process, seen, [value or "" for value in found]


async def _loopback_login(sandbox: SandboxFixture, env: Mapping[str, str], *args: str) -> tuple[int, str]:
    """``flowengine login podio --sandbox --loopback`` at DEBUG, the test playing the browser."""
    command = ["login", "podio", "--sandbox", "--loopback", "--no-browser", *args]
    login, seen, (url, redirect) = _spawn(command, env, _AUTHORIZE, _WAITING)
    async with httpx.AsyncClient(trust_env=False) as browser:
        await browser.get(redirect.removesuffix("/callback") + "/favicon.ico")
        await browser.get(redirect, params={"code": "forged-code-value", "state": "forged-state-value"})
        callback = await sandbox.consent(url, approve=True)
        assert (await browser.get(callback)).status_code == 200
    rest, _ = login.communicate(timeout=30)
    return login.returncode, "".join(seen) + rest


async def _stored_secrets(sandbox: SandboxFixture, store: str) -> set[str]:
    """The client secret, every code and refresh token sent, and every token kept in ``store``."""
    async with fe.AsyncEngine("podio", client=sandbox.client, store=store) as engine:
        tokens = await engine.tokens()
    found = {sandbox.client.client_secret or ""}
    found |= {
        v for r in sandbox.token_requests() for k, v in r.fields.items() if k in fe._security.SECRET_FIELDS
    }
    found |= {t.refresh_token or "" for t in tokens} | {t.access_token for t in tokens}
    return {secret for secret in found if len(secret) >= 8}


@pytest.mark.slow
async def test_sec13_cli_output_at_debug_shows_no_secret(sandbox: SandboxFixture, tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path / 'cli.db'}"
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_STORE": store}
    status, login = await _loopback_login(sandbox, env)
    assert status == 0, login
    _, as_json = await _loopback_login(sandbox, env, "--json")
    async with fe.AsyncEngine("podio", client=sandbox.client, store=store) as engine:
        key = (await engine.tokens())[0].key
        flow_id = (await engine.flows())[0].id
    printed = {"login": login, "login --json": as_json}
    for args in (
        ("tokens", "list"),
        ("tokens", "list", "--json"),
        ("tokens", "show", key),
        ("tokens", "show", key, "--json"),
        ("tokens", "refresh", key, "--sandbox"),
        ("flows", "list"),
        ("flows", "show", flow_id),
        ("flows", "show", flow_id, "--json"),
        ("token", "header", "podio"),
    ):
        result = _cli(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        # `token header` exists to print the header, on stdout only: its logs must stay clean.
        printed[" ".join(args)] = result.stderr if args[0] == "token" else result.stdout + result.stderr
    secrets = await _stored_secrets(sandbox, store)
    assert len(secrets) >= 6  # codes, tokens (rotated ones too), the client secret
    leaked = [
        (command, secret[:8]) for command, text in printed.items() for secret in secrets if secret in text
    ]
    assert not leaked


@pytest.mark.slow
async def test_sec13_sandbox_login_at_debug_shows_no_code(sandbox: SandboxFixture, tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path / 'cli.db'}"
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_STORE": store}
    result = _cli("login", "podio", "--sandbox", "--approve", env=env)
    assert result.returncode == 0, result.stderr
    for secret in await _stored_secrets(sandbox, store):
        assert secret not in result.stdout + result.stderr


# --- 14: no access log on the listeners that receive codes -------------------------------------------------


@pytest.mark.slow
async def test_sec14_cli_loopback_listener_writes_no_access_log(
    sandbox: SandboxFixture, tmp_path: Path
) -> None:
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_STORE": f"sqlite://{tmp_path / 'l.db'}"}
    status, printed = await _loopback_login(sandbox, env)
    assert status == 0, printed
    [request] = sandbox.token_requests()
    # The state is in the authorization URL the person is asked to open; the code never shows.
    for secret in (request.fields["code"], "forged-code-value", sandbox.client.client_secret or "?"):
        assert secret not in printed
    assert not re.search(r"\b(GET|POST) /", printed), "an access log line"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["web", "sandbox"])
async def test_sec14_the_web_and_sandbox_servers_write_no_access_log(
    sandbox: SandboxFixture, tmp_path: Path, command: str
) -> None:
    args = (
        ["web", "serve", "--spec", "podio", "--store", "memory://", "--port", "0", "--sandbox"]
        if command == "web"
        else ["sandbox", "serve", "--port", "0", "--consent", "approve"]
    )
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_WEB_SECRET": WEB_SECRET}
    announced = re.compile(r"(?:flowengine web|Podio sandbox) on (http://127\.0\.0\.1:\d+)")
    server, seen, (base,) = _spawn(args, env, announced)
    secrets: list[str] = []
    try:
        async with httpx.AsyncClient(trust_env=False, base_url=base) as browser:
            if command == "web":
                started = await browser.get("/auth/podio")
                callback = await sandbox.consent(started.headers["location"], approve=True)
                secrets += [query_of(callback)["code"], query_of(callback)["state"]]
                await browser.get("/auth/podio/callback?" + callback.split("?", 1)[1])
            else:
                query = {
                    "client_id": "sandbox-client",
                    "redirect_uri": "http://127.0.0.1/cb",
                    "state": "s" * 43,
                }
                authorized = await browser.get("/oauth/authorize", params=query)
                code = query_of(authorized.headers["location"])["code"]
                form = {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": "http://127.0.0.1/cb",
                }
                form |= {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}
                answer = await browser.post("/oauth/token", data=form)
                secrets += [code, "s" * 43, answer.json()["access_token"], answer.json()["refresh_token"]]
    finally:
        server.terminate()
        rest, _ = server.communicate(timeout=30)
    printed = "".join(seen) + rest
    for secret in secrets:
        assert secret not in printed
    assert not re.search(r"\b(GET|POST) /", printed), "an access log line"
