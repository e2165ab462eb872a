"""Hook implementations: the sandbox as a ``flowengine_sandbox`` and ``flowengine sandbox serve``.

The sandbox stands in for any spec whose endpoints are on ``podio.com``: each
named endpoint is re-pointed at the same path on the sandbox, so a spec keeps
its real URLs and ``--sandbox`` swaps only the host.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from flowengine import Client, FlowSpec, PluginError, hookimpl, is_loopback

if TYPE_CHECKING:  # every plugin loads with `flowengine --help`: keep imports for when they are used
    import click

    from .server import SandboxServer
    from .settings import SandboxSettings

__all__ = ["PodioSandbox", "flowengine_commands", "flowengine_sandbox"]

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


class PodioSandbox:
    """A Podio emulator for one spec: started here, or the one running at ``url``."""

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
    def endpoints(self) -> Mapping[str, str]:
        """Every endpoint of the spec, re-pointed at the same path on the sandbox."""
        return {name: self.url + urlsplit(url).path for name, url in self.spec.endpoints.items()}

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

        form = dict(parse_qsl(urlsplit(authorization_url).query, keep_blank_values=True))
        form["decision"] = "grant" if approve else "deny"
        quiet = _CONSENTING.set(True)  # the redirect's Location carries the code: no DEBUG trace of it
        try:
            # 30 s, not httpx's 5: a sandbox serving hundreds of flows on a loaded machine may take
            # seconds to accept a connection (the 5 s default failed a suite under a second run).
            async with httpx.AsyncClient(trust_env=False, timeout=30.0) as http:
                response = await http.post(f"{self.url}/oauth/authorize", data=form)
        finally:
            _CONSENTING.reset(quiet)
        location = response.headers.get("location")
        if response.status_code not in (302, 303) or not location:
            raise PluginError(
                f"the sandbox refused the authorization request ({response.status_code}): "
                f"{response.text[:200]}",
                code="sandbox_refused",
            )
        return str(location)

    def __enter__(self) -> PodioSandbox:
        import httpx

        if self._url is None:
            from .server import SandboxServer  # uvicorn is imported only when a sandbox starts

            self.server = SandboxServer(self.settings)
            self.server.start()
            self._url = self.server.url
        else:
            try:
                httpx.get(f"{self._url}/oauth/authorize", timeout=3, trust_env=False)
            except httpx.HTTPError:
                raise PluginError(
                    f"no sandbox answers at {self._url} (start one with `flowengine sandbox serve`)",
                    code="sandbox_unreachable",
                ) from None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            self._url = None


def emulates(spec: FlowSpec) -> bool:
    """True when the spec's endpoints are Podio's."""
    for url in spec.endpoints.values():
        host = (urlsplit(url).hostname or "").lower()
        if host == EMULATED_DOMAIN or host.endswith("." + EMULATED_DOMAIN):
            return True
    return False


@hookimpl
def flowengine_sandbox(spec: FlowSpec, url: str | None) -> PodioSandbox | None:
    """A Podio sandbox for Podio specs: the running one at ``url``, or a new local one."""
    return PodioSandbox(spec, url) if emulates(spec) else None


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``flowengine sandbox serve``."""
    import click

    from .settings import SandboxSettings

    @cli.group()
    def sandbox() -> None:
        """Run the local Podio emulator."""

    @sandbox.command("serve")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
    @click.option("--port", default=8790, show_default=True, type=int, help="Port (0 picks a free one).")
    @click.option(
        "--consent",
        type=click.Choice(["ask", "approve", "deny"]),
        default="ask",
        show_default=True,
        help="Show the consent page, or answer it automatically.",
    )
    def serve(host: str, port: int, consent: str) -> None:
        """Serve the Podio sandbox until Ctrl-C.

        \b
        Point later commands at it with FLOWENGINE_SANDBOX_URL:
          flowengine sandbox serve --port 8790 &
          FLOWENGINE_SANDBOX_URL=http://127.0.0.1:8790 flowengine login podio --sandbox --approve
        """
        from .server import serve_forever

        if not is_loopback(host):
            raise click.BadParameter(f"{host!r} is not a loopback address", param_hint="--host")
        settings = SandboxSettings(consent=consent)  # type: ignore[arg-type]
        serve_forever(host, port, settings)

    del serve
