"""What the engine tells observers and queues, as records that hold no secret.

``RequestEvent`` is one provider request as the driver saw it, handed to the
``flowengine_request`` hook (tracing, metrics). It is built from names and
numbers only: the URL without its query, fragment or user info, an HTTP status,
an error code. Never a header, a body, a token, a code or a verifier
(SECURITY.md 13), so an observer cannot leak what it was never given.

``RefreshOrder`` is one planned refresh handed to another worker through a
``RefreshQueue`` (the ``flowengine_refresh_queue`` hook): a spec name, a token
key and the fingerprint the plan saw, never the token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import attrs

from flowengine._ratelimit import RateLimit

__all__ = ["Enqueued", "RefreshOrder", "RefreshQueue", "RequestEvent", "safe_url"]


def safe_url(url: str) -> str:
    """``url`` without its query, fragment and user info: what may be shown of a request."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@attrs.frozen(slots=True)
class RequestEvent:
    """One attempt at one provider request: what, where, how it ended and how long it took.

    ``purpose`` is ``exchange``, ``refresh``, ``grant``, ``revocation``, ``userinfo``, ``discovery``,
    ``jwks``, ``device_authorization`` or ``device_poll``;
    ``attempt`` counts from 1; ``status`` is None when no answer came;
    ``error`` is the error code the attempt ended with (None: it succeeded);
    ``retry_in`` is the wait before the driver tries again (None: it does not,
    this attempt was the last); ``flow_id`` names the flow of an exchange.
    ``started_at`` is wall-clock time (``time.time()``), ``duration`` seconds.
    """

    spec: str
    purpose: str
    method: str
    url: str = attrs.field(converter=safe_url)
    attempt: int
    started_at: float
    duration: float
    status: int | None = None
    error: str | None = None
    retry_in: float | None = None
    flow_id: str | None = None

    @property
    def final(self) -> bool:
        """True when no further attempt follows this one."""
        return self.retry_in is None


@attrs.frozen(slots=True)
class RefreshOrder:
    """One token to refresh elsewhere: which spec, which key, and what the plan saw.

    ``fingerprint`` is the stored token's when the order was planned: a worker
    that finds another one refreshes nothing (someone already did). ``account``
    and ``client_id`` name the rate-limit budgets the refresh spends.
    """

    spec: str
    token_key: str
    fingerprint: str
    account: str
    client_id: str


@attrs.frozen(slots=True)
class Enqueued:
    """What a ``RefreshQueue`` did with a plan: how many it queued, over how long, where."""

    queued: int
    skipped: int
    span: float
    destination: str


@runtime_checkable
class RefreshQueue(Protocol):
    """Hands planned refreshes to other workers; returned by the ``flowengine_refresh_queue`` hook."""

    def enqueue_refreshes(
        self,
        orders: Sequence[RefreshOrder],
        *,
        store: str,
        account_limit: RateLimit | None,
        client_limit: RateLimit | None,
    ) -> Enqueued:
        """Queue one refresh per order, spread in time to keep to the limits; say what was done.

        ``store`` is the URL the plan was read from: the workers must use the
        same store, so a queue refuses (``ConfigError``) one its workers cannot share.
        """
        ...
