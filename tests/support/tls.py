"""One TLS context for the tests' own HTTP clients (browsers playing the person, API callers).

httpx loads certifi's roots for every client it makes: tens of milliseconds each, more than
the loopback request the client then sends. The tests' clients share this context instead.
"""

from __future__ import annotations

import functools
import ssl

import certifi


@functools.cache
def tls() -> ssl.SSLContext:
    """certifi's roots, as httpx trusts by default, loaded once per test process."""
    return ssl.create_default_context(cafile=certifi.where())
