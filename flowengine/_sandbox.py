"""What a sandbox plugin offers: a local stand-in for a provider, for tests and demos."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, runtime_checkable

from flowengine._client import Client

__all__ = ["Sandbox"]


@runtime_checkable
class Sandbox(Protocol):
    """A provider emulator; returned by the ``flowengine_sandbox`` hook.

    Use it as a context manager: entering starts it (or checks the running one
    answers), leaving stops what was started.
    """

    @property
    def url(self) -> str:
        """The base URL it serves on (loopback)."""
        ...

    @property
    def endpoints(self) -> Mapping[str, str]:
        """Endpoint overrides that point a spec at this sandbox."""
        ...

    @property
    def client(self) -> Client:
        """A client registered with the sandbox (id, secret, redirect URI)."""
        ...

    async def consent(self, authorization_url: str, *, approve: bool) -> str:
        """Play the person on the consent page; return the callback URL it redirects to."""
        ...

    def __enter__(self) -> Sandbox: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
