"""The client registration an engine acts as: id, secret, redirect URI."""

from __future__ import annotations

import attrs

__all__ = ["Client"]


@attrs.frozen
class Client:
    """An OAuth client as registered with the provider; the secret never shows in repr."""

    client_id: str
    client_secret: str | None = attrs.field(default=None, repr=False)
    redirect_uri: str | None = None
    #: The domain registered with the API key, when it differs from the spec's.
    registered_domain: str | None = None
