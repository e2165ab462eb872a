"""The store contract every backend implements (DESIGN.md, "Store contract").

A store keeps pending and finished flows, tokens, and short leases. It never
decides anything: ``compare_and_set`` is the only way a flow changes, and two
workers racing on one flow see exactly one winner.

Leases are meant to be short and renewed: a holder takes one for a few seconds
and ``renew``s it while its work goes on, so a lease left by a holder that died
stops blocking the others within seconds. Which clock times a lease is the
store's: the memory and SQLite stores keep time themselves (their ``clock``
option, ``time.time`` by default, so tests can pass a fake one), Redis and
PostgreSQL use their server's clock, so workers on hosts with skewed clocks
still agree. ``Lease.expires_at`` is in that clock (Unix seconds).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

from flowengine._records import Flow, Token
from flowengine._stats import FlowCounts, TokenCounts

__all__ = ["Lease", "Store"]


@attrs.frozen(slots=True)
class Lease:
    """A held lease: release it with the same object (the token proves ownership)."""

    key: str
    token: str = attrs.field(repr=False)
    expires_at: float


@runtime_checkable
class Store(Protocol):
    """Where flows, tokens and leases live; returned by the ``flowengine_store`` hook."""

    async def create(self, flow: Flow) -> None:
        """Add a new flow; ``StoreError`` (``store_conflict``) if its id exists."""
        ...

    async def get(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None (expired pending flows may be gone)."""
        ...

    async def get_by_state(self, state_hash: str) -> Flow | None:
        """The flow whose ``state_hash`` this is, or None."""
        ...

    async def list_flows(self, *, spec: str | None = None, state: str | None = None) -> list[Flow]:
        """Flows, optionally only one spec's or one state's, oldest first."""
        ...

    async def compare_and_set(self, flow: Flow, expected_version: int) -> bool:
        """Replace the flow if its stored version is ``expected_version``; True if it did.

        The caller passes the new record with ``version = expected_version + 1``.
        """
        ...

    async def delete(self, flow_id: str) -> bool:
        """Remove a flow; True if there was one."""
        ...

    async def purge(self, now: float) -> int:
        """Remove flows that expired before ``now``; how many were removed."""
        ...

    async def put_token(self, token: Token) -> None:
        """Insert or replace the token under ``token.key``."""
        ...

    async def get_token(self, key: str) -> Token | None:
        """The token under ``key``, or None."""
        ...

    async def list_tokens(
        self, *, provider: str | None = None, expiring_before: float | None = None
    ) -> list[Token]:
        """Tokens, optionally one provider's, or those expiring before a time."""
        ...

    async def delete_token(self, key: str) -> bool:
        """Remove a token; True if there was one."""
        ...

    async def flow_counts(self, *, since: float, spec: str | None = None) -> FlowCounts:
        """Flows stored per spec and state now, and transitions per hour from ``since``'s hour on.

        Read from counts the store keeps as it writes (see ``flowengine._stats``),
        never by reading the flows: the cost does not grow with their number.
        """
        ...

    async def token_counts(
        self, *, now: float, within: float, provider: str | None = None, limit: int = 20
    ) -> TokenCounts:
        """Tokens per provider by health at ``now`` (refresh window ``within`` seconds).

        With up to ``limit`` tokens per provider needing attention (dead, expired,
        expiring). Counted from an index ordered by expiry: the cost grows with the
        tokens expired or expiring within the window, not with all of them.
        """
        ...

    async def acquire(self, key: str, ttl: float) -> Lease | None:
        """Take the lease ``key`` for ``ttl`` seconds, or None while another holds it."""
        ...

    async def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend a held lease to ``ttl`` seconds from now: the renewed lease, or None.

        None when the lease is no longer this holder's: it expired (by the
        store's clock), was released, or was taken by another since. A holder
        that gets None must stop acting as the only one.
        """
        ...

    async def release(self, lease: Lease) -> None:
        """Give a lease back (a no-op if it already expired and was taken by another)."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...
