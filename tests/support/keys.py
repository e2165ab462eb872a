"""RSA key pairs for the tests, each made once per test process (one takes about 80 ms to make).

``rsa_key(n, parameters)`` is the process's n-th 2048-bit key pair as a new joserfc ``RSAKey``
with those JWK parameters (``kid``, ``use``, ``alg``...). The same n is the same key pair, so
a test that needs keys that differ (the impostor's beside the registered one) numbers them
0, 1, 2...; every test gets the key object fresh. Keys whose freshness is the point (a
provider's rotation) are made where they are needed, not here.
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

__all__ = ["rsa_key"]


@functools.cache
def _pair(n: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_key(n: int = 0, parameters: dict[str, Any] | None = None) -> RSAKey:
    """The n-th key pair of this process, as a new ``RSAKey`` with ``parameters``."""
    return RSAKey.import_key(_pair(n), parameters)
