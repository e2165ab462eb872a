"""What the OIDC tests share: the key-resolution loop a driver runs, and error-code plumbing.

``keys_for`` is the loop the engine's driver will run around ``JwksCache.resolve``: send the
fetch it asks for, ``accept`` the answer, resolve again (at most once: the cache throttles).
"""

from __future__ import annotations

import flowengine as fe
from flowengine._jwks import FetchKeys, JwksCache, JwsHeader, KeysFound, SigningKey
from flowengine._oidc_errors import Refusal, refuse_id_token

from tests.support.oidc_provider import OidcProvider


async def keys_for(
    cache: JwksCache,
    transport: fe.Transport,
    provider: OidcProvider,
    header: JwsHeader,
    now: float,
    refuse: Refusal = refuse_id_token,
) -> tuple[SigningKey, ...]:
    """The keys that fit ``header``, fetching the provider's set when the cache asks for it."""
    answer = cache.resolve(provider.issuer, provider.jwks_uri, header, now, refuse=refuse)
    if isinstance(answer, FetchKeys):
        cache.accept(provider.issuer, provider.jwks_uri, await transport.send(answer.request), now)
        answer = cache.resolve(provider.issuer, provider.jwks_uri, header, now, refuse=refuse)
    assert isinstance(answer, KeysFound)
    return answer.keys
