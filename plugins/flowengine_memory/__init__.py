"""The memory store: flows, tokens and leases in this process, for tests and single-process use.

Selected by the URL ``memory://``. Everything is lost when the process ends;
use ``sqlite:///path`` (or Redis/PostgreSQL) for anything that must survive.
Leases are timed by the store's ``clock`` (``time.time`` unless one is passed:
``MemoryStore(clock=fake.now)`` in tests). Flow counts are kept as flows are
written, as the durable stores keep theirs; token counts are worked out from
every token (a store of one process holds few).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable

import attrs
from flowengine import (
    Flow,
    FlowCounts,
    HealthCount,
    Lease,
    StateCount,
    StepCount,
    StoreError,
    Token,
    TokenCounts,
    TokenHealth,
    attention_order,
    check_token_query,
    health_of,
    hookimpl,
    hour_of,
    step_of,
)

__all__ = ["MemoryStore", "flowengine_store"]


def _at_rest(flow: Flow) -> Flow:
    """The flow as kept: never with its ``authorization_url`` (it carries ``state`` in clear).

    Only the record ``start()`` returns has one, so most writes keep the record as is.
    """
    return flow if flow.authorization_url is None else attrs.evolve(flow, authorization_url=None)


class MemoryStore:
    """A Store kept in dictionaries; thread-safe, so several loops may share one.

    ``clock`` gives the time (Unix seconds) that leases are timed by.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._flows: dict[str, Flow] = {}
        self._by_state: dict[str, str] = {}
        self._tokens: dict[str, Token] = {}
        self._leases: dict[str, Lease] = {}
        self._states: Counter[tuple[str, str]] = Counter()
        #: (spec, hour, source, event, dest, error) -> transitions.
        self._steps: Counter[tuple[str, float, str, str, str, str | None]] = Counter()

    def _count(self, old: Flow | None, new: Flow | None) -> None:
        """Keep the counts as a write replaces ``old`` with ``new`` (either may be None); under the lock."""
        if old is not None:
            self._states[old.spec, old.state] -= 1
        if new is not None:
            self._states[new.spec, new.state] += 1
            step = step_of(new) if old is None or new.version > old.version else None
            if step is not None:
                self._steps[new.spec, hour_of(step.at), step.source, step.event, step.dest, step.error] += 1

    async def create(self, flow: Flow) -> None:
        """Add a new flow; ``store_conflict`` if its id or state is taken."""
        with self._lock:
            if flow.id in self._flows or flow.state_hash in self._by_state:
                raise StoreError(f"flow {flow.id!r} already exists", code="store_conflict", retryable=False)
            self._flows[flow.id] = _at_rest(flow)
            self._by_state[flow.state_hash] = flow.id
            self._count(None, flow)

    async def get(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None."""
        return self._flows.get(flow_id)

    async def get_by_state(self, state_hash: str) -> Flow | None:
        """The flow whose state digest this is, or None."""
        flow_id = self._by_state.get(state_hash)
        return self._flows.get(flow_id) if flow_id is not None else None

    async def list_flows(self, *, spec: str | None = None, state: str | None = None) -> list[Flow]:
        """Flows, oldest first, optionally filtered."""
        with self._lock:
            flows = list(self._flows.values())
        return sorted(
            (f for f in flows if (spec is None or f.spec == spec) and (state is None or f.state == state)),
            key=lambda f: f.created_at,
        )

    async def compare_and_set(self, flow: Flow, expected_version: int) -> bool:
        """Replace the flow when its stored version is ``expected_version``."""
        with self._lock:
            current = self._flows.get(flow.id)
            if current is None or current.version != expected_version:
                return False
            self._flows[flow.id] = _at_rest(flow)
            self._count(current, flow)
            return True

    async def delete(self, flow_id: str) -> bool:
        """Remove a flow; True if there was one."""
        with self._lock:
            flow = self._flows.pop(flow_id, None)
            if flow is not None:
                self._by_state.pop(flow.state_hash, None)
                self._count(flow, None)
            return flow is not None

    async def purge(self, now: float) -> int:
        """Remove flows whose ``expires_at`` is before ``now``, and transition counts past keeping."""
        with self._lock:
            gone = [f for f in self._flows.values() if f.expires_at < now]
            for flow in gone:
                del self._flows[flow.id]
                self._by_state.pop(flow.state_hash, None)
                self._count(flow, None)
            for key in [key for key in self._steps if key[1] < now - FlowCounts.KEPT]:
                del self._steps[key]
            return len(gone)

    async def flow_counts(self, *, since: float, spec: str | None = None) -> FlowCounts:
        """Flows per spec and state now, and transitions per hour from ``since``'s hour on."""
        first = hour_of(since)
        with self._lock:
            states = [StateCount(s, state, n) for (s, state), n in self._states.items()]
            steps = [StepCount(*key, count=n) for key, n in self._steps.items() if key[1] >= first]
        return FlowCounts.summed(
            (c for c in states if spec is None or c.spec == spec),
            (c for c in steps if spec is None or c.spec == spec),
        )

    async def token_counts(
        self, *, now: float, within: float, provider: str | None = None, limit: int = 20
    ) -> TokenCounts:
        """Tokens per provider by health at ``now``, worked out from every token (see the module)."""
        check_token_query(now, within, limit)
        with self._lock:
            tokens = [t for t in self._tokens.values() if provider is None or t.provider == provider]
        counts: Counter[tuple[str, TokenHealth]] = Counter()
        needing: dict[str, list[Token]] = {}
        for token in tokens:
            health = health_of(token, now, within)
            counts[token.provider, health] += 1
            if health is not TokenHealth.FRESH:
                needing.setdefault(token.provider, []).append(token)
        shown = [t for name in sorted(needing) for t in attention_order(needing[name])[:limit]]
        return TokenCounts(
            counts=tuple(HealthCount(p, h, n) for (p, h), n in sorted(counts.items())),
            tokens=tuple(shown),
        )

    async def put_token(self, token: Token) -> None:
        """Insert or replace a token under its key."""
        with self._lock:
            self._tokens[token.key] = token

    async def get_token(self, key: str) -> Token | None:
        """The token under ``key``, or None."""
        return self._tokens.get(key)

    async def list_tokens(
        self, *, provider: str | None = None, expiring_before: float | None = None
    ) -> list[Token]:
        """Tokens, optionally one provider's or those expiring before a time."""
        with self._lock:
            tokens = list(self._tokens.values())
        return [
            t
            for t in tokens
            if (provider is None or t.provider == provider)
            and (expiring_before is None or (t.expires_at is not None and t.expires_at < expiring_before))
        ]

    async def delete_token(self, key: str) -> bool:
        """Remove a token; True if there was one."""
        with self._lock:
            return self._tokens.pop(key, None) is not None

    async def acquire(self, key: str, ttl: float) -> Lease | None:
        """Take a lease unless a live one is held (by this store's clock)."""
        _check_ttl(ttl)
        with self._lock:
            now = self._clock()
            held = self._leases.get(key)
            if held is not None and held.expires_at > now:
                return None
            lease = Lease(key, secrets.token_hex(8), now + ttl)
            self._leases[key] = lease
            return lease

    async def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend the lease to ``ttl`` seconds from now while it is still ours and live."""
        _check_ttl(ttl)
        with self._lock:
            now = self._clock()
            held = self._leases.get(lease.key)
            if held is None or held.token != lease.token or held.expires_at <= now:
                return None
            renewed = Lease(lease.key, lease.token, now + ttl)
            self._leases[lease.key] = renewed
            return renewed

    async def release(self, lease: Lease) -> None:
        """Give a lease back, if it is still ours."""
        with self._lock:
            held = self._leases.get(lease.key)
            if held is not None and held.token == lease.token:
                del self._leases[lease.key]

    async def aclose(self) -> None:
        """Nothing to release."""


def _check_ttl(ttl: float) -> None:
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"a lease needs a positive, finite ttl in seconds, not {ttl!r}")


@hookimpl
def flowengine_store(url: str) -> MemoryStore | None:
    """``memory://`` (anything after the scheme is ignored): a new, empty MemoryStore."""
    return MemoryStore() if url.split(":", 1)[0] == "memory" else None
