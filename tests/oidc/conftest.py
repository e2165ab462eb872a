"""Fixtures of the OpenID Connect tests: Authlib's provider on loopback, and the project's transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import flowengine as fe
import pytest

from tests.support import oidc_provider
from tests.support.oidc_provider import OidcProvider


@pytest.fixture(scope="session")
def _oidc_provider() -> Iterator[OidcProvider]:
    yield from oidc_provider.serve()


@pytest.fixture
def provider(_oidc_provider: OidcProvider) -> OidcProvider:
    """The session's provider with no codes, tokens, records or switches (its keys are kept)."""
    _oidc_provider.reset()
    return _oidc_provider


@pytest.fixture
async def transport() -> AsyncIterator[fe.Transport]:
    """The installed transport plugin: the OIDC requests go over the same wire as every other."""
    sender = fe.open_transport(fe.TransportConfig(timeout=10))
    try:
        yield sender
    finally:
        await sender.aclose()
