"""The client registration an engine acts as: id, secret, redirect URI, and a signing key."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import attrs

from flowengine._arguments import refuse_bad_text

__all__ = ["Client"]


@attrs.frozen
class Client:
    """An OAuth client as registered with the provider; the secret and key never show in repr.

    ``private_key`` is for ``client_auth: private_key_jwt`` (RFC 7523, OIDC Core §9): a PEM
    private key (text or bytes), a private JWK (a mapping or its JSON text), or the path of a
    file holding either (``pathlib.Path``), read when the engine starts. ``private_key_password``
    opens an encrypted PEM; ``private_key_id`` is the ``kid`` its assertions carry (default: the
    JWK's own, else the key's RFC 7638 thumbprint).
    """

    client_id: str
    client_secret: str | None = attrs.field(default=None, repr=False)
    redirect_uri: str | None = None
    #: The domain registered with the API key, when it differs from the spec's.
    registered_domain: str | None = None
    private_key: str | bytes | Mapping[str, Any] | PathLike[str] | None = attrs.field(
        default=None, repr=False, eq=False
    )
    private_key_password: str | None = attrs.field(default=None, repr=False)
    private_key_id: str | None = None

    def __attrs_post_init__(self) -> None:
        text = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "registered_domain": self.registered_domain,
            "private_key": self.private_key if isinstance(self.private_key, str) else None,
            "private_key_password": self.private_key_password,
            "private_key_id": self.private_key_id,
        }
        refuse_bad_text(**{f"Client {name}": value for name, value in text.items()})
