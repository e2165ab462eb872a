"""The driver's one source of randomness: every random value a flow or a request needs.

The core draws nothing (``tests/test_layers.py`` forbids ``secrets``, ``random`` and
``uuid`` in it): the flow id, ``state``, PKCE verifier and nonce come in with ``Begin``
(``flow_secrets``), a signed client assertion's ``jti`` with its input (``new_token``).
They are all drawn here, from ``secrets`` (SECURITY.md 1, 2), unless a test replaced
the source (``flowengine.testing.seeded_randomness``).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

from flowengine._steps import FlowSecrets

__all__ = ["flow_secrets", "new_token", "use_source"]

#: Where random bytes come from: ``n`` bytes in, ``n`` random bytes out.
Source = Callable[[int], bytes]

_source: Source = secrets.token_bytes


def use_source(source: Source) -> Source:
    """Draw every later value from ``source``; returns the source it replaced (tests only)."""
    global _source
    previous, _source = _source, source
    return previous


def new_token() -> str:
    """256 random bits, URL-safe (43 characters): a ``state``, verifier, nonce or ``jti``."""
    return _text(_source(32))


def flow_secrets(*, pkce: bool) -> FlowSecrets:
    """Fresh values for a new flow: a 128-bit id, and 256-bit ``state``, nonce and PKCE verifier.

    The id is hex: it never starts with ``-``, which a command line would read as an option.
    """
    drawn = _source(16 + 3 * 32)  # one draw for all four: each is its own slice of it
    verifier = _text(drawn[48:80]) if pkce else None
    return FlowSecrets(drawn[:16].hex(), _text(drawn[16:48]), verifier, _text(drawn[80:]))


def _text(random: bytes) -> str:
    return base64.urlsafe_b64encode(random).rstrip(b"=").decode("ascii")
