"""Hook implementations: the sandbox as a ``flowengine_sandbox`` and ``flowengine sandbox serve``.

The sandbox stands in for any spec. A spec whose endpoints are on ``podio.com``
gets Podio's emulation (its paths, rate limits and error envelope): each named
endpoint is re-pointed at the same path on the sandbox. Any other spec is
emulated from the spec itself (``SpecSandbox``): each endpoint is re-pointed at
``/_e/SPEC/ENDPOINT/`` followed by its own host and path, so a tenant's host
(``{subdomain}.zendesk.com``) still names the tenant on loopback.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from flowengine import Client, FlowError, FlowSpec, PluginError, hookimpl, is_loopback, spec_document

if TYPE_CHECKING:  # every plugin loads with `flowengine --help`: keep imports for when they are used
    import click

    from .server import SandboxServer
    from .settings import SandboxSettings

__all__ = ["PodioSandbox", "SpecSandbox", "flowengine_commands", "flowengine_sandbox"]

EMULATED_DOMAIN = "podio.com"
#: Where the sandbox's registered client is sent back to. Nothing needs to listen
#: there for `login --sandbox`: the callback URL is read from the redirect itself.
SANDBOX_REDIRECT_URI = "http://127.0.0.1/flowengine/callback"


_CONSENTING: contextvars.ContextVar[bool] = contextvars.ContextVar("consenting", default=False)


class _NoTraceWhileConsenting(logging.Filter):
    """Drops httpcore's DEBUG trace (it prints response headers) of the consent request only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _CONSENTING.get()


logging.getLogger("httpcore.http11").addFilter(_NoTraceWhileConsenting())


class _Sandbox:
    """A provider emulator for one spec: started here, or the one running at ``url``."""

    def __init__(self, spec: FlowSpec, url: str | None = None, settings: SandboxSettings | None = None):
        from .settings import SandboxSettings

        self.spec = spec
        self.settings = settings or SandboxSettings()
        self._url = url.rstrip("/") if url else None
        self.server: SandboxServer | None = None

    @property
    def url(self) -> str:
        """The sandbox's base URL."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started: use it in a `with` block")
        return self._url

    @property
    def endpoints(self) -> Mapping[str, str]:  # pragma: no cover - each emulator re-points its own way
        """Every endpoint of the spec, re-pointed at the sandbox."""
        raise NotImplementedError

    @property
    def client(self) -> Client:
        """The client the sandbox registers by default."""
        registered = next(iter(self.settings.clients.values()))
        return Client(
            registered.client_id,
            registered.client_secret,
            redirect_uri=SANDBOX_REDIRECT_URI,
            registered_domain=registered.registered_domain,
        )

    async def consent(self, authorization_url: str, *, approve: bool) -> str:
        """Answer the consent form with Grant or Deny; return the callback URL it redirects to.

        The decision is posted as the consent page's form would post it, so the
        person's answer wins even over a sandbox serving with ``--consent approve``.
        """
        import httpx

        page, form = _consent_form(authorization_url)
        form["decision"] = "grant" if approve else "deny"
        quiet = _CONSENTING.set(True)  # the redirect's Location carries the code: no DEBUG trace of it
        try:
            # 30 s, not httpx's 5: a sandbox serving hundreds of flows on a loaded machine may take
            # seconds to accept a connection (the 5 s default failed a suite under a second run).
            async with httpx.AsyncClient(trust_env=False, timeout=30.0) as http:
                response = await http.post(self.consent_url(page), data=form)
        finally:
            _CONSENTING.reset(quiet)
        location = response.headers.get("location")
        if response.status_code not in (302, 303) or not location:
            # The body is not shown: from something that is not the sandbox it may be a whole HTML page.
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise PluginError(
                f"the sandbox at {self.url} refused the authorization request "
                f"(HTTP {response.status_code}, {kind})",
                code="sandbox_refused",
            )
        return str(location)

    def consent_url(self, page: str) -> str:
        """Where the consent form is posted, given the authorization URL's address."""
        return page

    def __enter__(self) -> _Sandbox:
        import httpx

        if self._url is None:
            from .server import SandboxServer  # uvicorn is imported only when a sandbox starts

            self.server = SandboxServer(self.settings)
            self.server.app.state.sandbox_specs[self.spec.name] = self.spec
            self.server.start()
            self._url = self.server.url
        else:
            self._check_running(httpx)
            self._register(httpx)
        return self

    def _register(self, httpx: Any) -> None:
        """Tell the running sandbox about the spec (Podio's emulation needs no telling)."""

    def _check_running(self, httpx: Any) -> None:
        """A flowengine sandbox answers at ``url``, or ``sandbox_unreachable`` says what does not.

        ``/_sandbox/faults`` is asked because only a sandbox has it, it never
        fails (faults spare ``/_sandbox/``) and it counts against no rate limit.
        """
        start = "start one with `flowengine sandbox serve` and point FLOWENGINE_SANDBOX_URL at it"
        try:
            answer = httpx.get(f"{self._url}/_sandbox/faults", timeout=3, trust_env=False)
        except httpx.HTTPError as exc:
            raise PluginError(
                f"no sandbox answers at {self._url} ({type(exc).__name__}): {start}",
                code="sandbox_unreachable",
            ) from None
        kind = answer.headers.get("content-type", "").split(";")[0]
        if answer.status_code != 200 or kind != "application/json":
            raise PluginError(
                f"what answers at {self._url} is not a flowengine sandbox "
                f"(GET /_sandbox/faults: HTTP {answer.status_code}, {kind or 'no content type'}): {start}",
                code="sandbox_unreachable",
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            self._url = None


class PodioSandbox(_Sandbox):
    """Podio's emulation, for a spec whose endpoints are on podio.com: its own paths and limits."""

    @property
    def endpoints(self) -> Mapping[str, str]:
        """Every endpoint of the spec, re-pointed at the same path on the sandbox."""
        return {name: self.url + urlsplit(url).path for name, url in self.spec.endpoints.items()}

    def consent_url(self, page: str) -> str:
        """Podio's consent form is posted to its authorization endpoint."""
        return f"{self.url}/oauth/authorize"

    def __enter__(self) -> PodioSandbox:
        super().__enter__()
        return self


class SpecSandbox(_Sandbox):
    """Any spec's provider, emulated from the spec itself (``_emulator``)."""

    @property
    def endpoints(self) -> Mapping[str, str]:
        """Every endpoint as ``/_e/SPEC/ENDPOINT/HOST/PATH`` on the sandbox, its variables kept."""
        base = f"{self.url}/_e/{self.spec.name}"
        return {name: f"{base}/{name}/{url.split('://', 1)[-1]}" for name, url in self.spec.endpoints.items()}

    def _register(self, httpx: Any) -> None:
        """Send the spec to the running sandbox, which emulates it from then on."""
        answer = httpx.post(
            f"{self._url}/_sandbox/specs", json=spec_document(self.spec), timeout=5, trust_env=False
        )
        if answer.status_code != 200:
            raise PluginError(
                f"the sandbox at {self._url} refused the spec {self.spec.name!r} (HTTP {answer.status_code})",
                code="sandbox_refused",
            )

    def __enter__(self) -> SpecSandbox:
        super().__enter__()
        return self


def _consent_form(authorization_url: str) -> tuple[str, dict[str, str]]:
    """The page's address and the request's parameters (after ``#`` for a fragment-style URL)."""
    address, _, fragment = authorization_url.partition("#")
    if fragment:
        query = fragment.partition("?")[2]
    else:
        address, _, query = address.partition("?")
    return address.partition("?")[0], dict(parse_qsl(query, keep_blank_values=True))


def emulates(spec: FlowSpec) -> bool:
    """True when the spec's endpoints are Podio's."""
    for url in spec.endpoints.values():
        host = (urlsplit(url).hostname or "").lower()
        if host == EMULATED_DOMAIN or host.endswith("." + EMULATED_DOMAIN):
            return True
    return False


@hookimpl
def flowengine_sandbox(spec: FlowSpec, url: str | None) -> _Sandbox | None:
    """A sandbox for ``spec``: Podio's emulation for Podio's specs, else the spec's own.

    None for a spec that discovers its endpoints from an issuer given per connection (the
    generic ``oidc`` spec): the sandbox emulates a provider from the endpoints a spec writes.
    """
    if spec.discovery is not None:
        return None
    return PodioSandbox(spec, url) if emulates(spec) else SpecSandbox(spec, url)


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``flowengine sandbox serve``."""
    import click

    @cli.group()
    def sandbox() -> None:
        """Run the local provider emulator (Podio's, and any spec's)."""

    @sandbox.command("serve")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
    @click.option(
        "--port",
        default=8790,
        show_default=True,
        type=click.IntRange(0, 65535),
        help="Port (0 picks a free one; one in use exits 2).",
    )
    @click.option(
        "--consent",
        type=click.Choice(["ask", "approve", "deny"]),
        default="ask",
        show_default=True,
        help="Show the consent page, or answer it automatically.",
    )
    def serve(host: str, port: int, consent: str) -> None:
        """Serve the sandbox (Podio, and any spec a command points at it) until Ctrl-C.

        \b
        Point later commands at it with FLOWENGINE_SANDBOX_URL:
          flowengine sandbox serve --port 8790 &
          FLOWENGINE_SANDBOX_URL=http://127.0.0.1:8790 flowengine login podio --sandbox --approve
        """
        from flowengine.cli import fail

        from .server import serve_forever
        from .settings import SandboxSettings

        if not is_loopback(host):
            raise click.BadParameter(f"{host!r} is not a loopback address", param_hint="--host")
        settings = SandboxSettings(consent=consent)  # type: ignore[arg-type]
        try:
            serve_forever(host, port, settings)
        except FlowError as exc:  # port_in_use: the same words as `web serve`
            fail(exc)

    del serve
