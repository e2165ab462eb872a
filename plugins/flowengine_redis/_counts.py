"""The Redis store's counts for the operator's view: sets and hashes its scripts keep.

Flows: ``in:{spec}:{state}`` holds the ids of the flows in each state (written
by the create, compare-and-set and delete scripts, see ``_scripts``), scored by
when Redis drops the flow by itself, so a count is one ``ZCARD`` once the ids
Redis dropped are trimmed (``ZREMRANGEBYSCORE`` up to the server's time).
Transitions are counted per hour in ``steps:{hour}`` hashes. Tokens: each
provider's live tokens are in two sets scored by expiry (refreshable or not) and
its dead ones in a third, so every health is a ``ZCARD`` or a ``ZCOUNT``: the
cost does not grow with the number of flows or tokens (O(log n) per count).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from flowengine import (
    Flow,
    FlowCounts,
    HealthCount,
    StateCount,
    StepCount,
    Token,
    TokenCounts,
    TokenHealth,
    attention_order,
    hour_of,
    step_of,
)

__all__ = [
    "CountKeys",
    "drop_old_steps",
    "flow_counts",
    "health_args",
    "state_name",
    "step_args",
    "token_counts",
    "unclassified",
]

_SEP = "\x1f"
#: Which health set a token goes in (the scripts' ARGV numbering).
_REFRESHABLE, _NOT_REFRESHABLE, _DEAD = 1, 2, 3


def _text(raw: object) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class CountKeys:
    """The names of the counting keys under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.states = f"{prefix}states"
        self.step_hours = f"{prefix}step_hours"
        self.providers = f"{prefix}providers"

    def in_state(self, name: str) -> str:
        """The set of the flows in one state; ``name`` is ``spec:state``."""
        return f"{self.prefix}in:{name}"

    def steps(self, hour: float) -> str:
        return f"{self.prefix}steps:{hour:.0f}"

    def health(self, provider: str) -> list[str]:
        """The provider's live refreshable, live not refreshable and dead token sets, in that order."""
        return [f"{self.prefix}health:{provider}:{which}" for which in ("r", "n", "dead")]


def state_name(spec: str, state: str) -> str:
    """A ``states`` member: spec names never hold ``:``, so the first one splits it back."""
    return f"{spec}:{state}"


def step_args(keys: CountKeys, flow: Flow) -> tuple[list[str], list[Any]]:
    """KEYS (steps hash, ``step_hours``) and ARGV (expiry, hour, field, count?) of a write's transition."""
    step = step_of(flow)
    if step is None:
        return [keys.steps(0), keys.step_hours], [0, 0, "", "0"]
    hour = hour_of(step.at)
    # Kept FlowCounts.KEPT past the hour, or past now for an hour of a clock long gone (tests, replays).
    expire_ms = math.ceil((max(hour, time.time()) + FlowCounts.KEPT) * 1000)
    field = _SEP.join((step.source, step.event, step.dest, step.error or ""))
    return [keys.steps(hour), keys.step_hours], [expire_ms, repr(hour), f"{flow.spec}{_SEP}{field}", "1"]


def health_args(token: Token) -> tuple[int, float]:
    """Which health set a token goes in, and its score there (expiry, or when it died)."""
    if token.dead:
        return _DEAD, token.dead_at if token.dead_at is not None else token.obtained_at
    which = _REFRESHABLE if token.refresh_token is not None else _NOT_REFRESHABLE
    return which, math.inf if token.expires_at is None else token.expires_at


async def flow_counts(redis: Any, keys: CountKeys, since: float, spec: str | None) -> FlowCounts:
    """Flows per state now (trimming the ids Redis dropped), and transitions from ``since``'s hour on."""
    pipe = redis.pipeline(transaction=False)
    pipe.smembers(keys.states)
    pipe.time()
    pipe.zrangebyscore(keys.step_hours, repr(hour_of(since)), "+inf")
    names_raw, (seconds, micros), hours_raw = await pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    names = sorted(n for n in map(_text, names_raw) if spec is None or n.split(":", 1)[0] == spec)
    hours = [float(_text(h)) for h in hours_raw]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.zremrangebyscore(keys.in_state(name), "-inf", now_ms)
        pipe.zcard(keys.in_state(name))
    for hour in hours:
        pipe.hgetall(keys.steps(hour))
    replies = await pipe.execute()
    states = []
    for i, name in enumerate(names):
        spec_name, state = name.split(":", 1)
        states.append(StateCount(spec_name, state, int(replies[2 * i + 1])))
    steps = []
    for hour, fields in zip(hours, replies[2 * len(names) :], strict=True):
        for raw_field, raw_count in fields.items():
            spec_name, source, event, dest, error = _text(raw_field).split(_SEP)
            if spec is None or spec_name == spec:
                steps.append(StepCount(spec_name, hour, source, event, dest, error or None, int(raw_count)))
    return FlowCounts.summed(states, steps)


async def drop_old_steps(redis: Any, keys: CountKeys, now: float) -> None:
    """Delete the hours older than ``FlowCounts.KEPT`` before ``now`` (on the engine's clock, as written)."""
    old = [
        float(_text(h))
        for h in await redis.zrangebyscore(keys.step_hours, "-inf", f"({now - FlowCounts.KEPT!r}")
    ]
    if old:
        pipe = redis.pipeline(transaction=True)
        pipe.delete(*(keys.steps(hour) for hour in old))
        pipe.zrem(keys.step_hours, *(repr(hour) for hour in old))
        await pipe.execute()


async def unclassified(redis: Any, keys: CountKeys, provider: str) -> list[str]:
    """Keys of the provider's tokens in no health set (stored by a flowengine before counting began).

    Two cardinalities when every token is classified; the set difference only when not.
    """
    index = f"{keys.prefix}tokens:{provider}"
    pipe = redis.pipeline(transaction=False)
    pipe.zcard(index)
    for key in keys.health(provider):
        pipe.zcard(key)
    total, *classified = await pipe.execute()
    if int(total) == sum(int(n) for n in classified):
        return []
    return [_text(k) for k in await redis.zdiff([index, *keys.health(provider)])]


async def _health(
    redis: Any, keys: CountKeys, providers: Sequence[str], now: float, until: float
) -> list[HealthCount]:
    pipe = redis.pipeline(transaction=False)
    for provider in providers:
        refreshable, other, dead_set = keys.health(provider)
        for key in (refreshable, other, dead_set):
            pipe.zcard(key)
        for key in (refreshable, other):
            pipe.zcount(key, "-inf", repr(now))
            pipe.zcount(key, f"({now!r}", repr(until))
    replies = [int(r) for r in await pipe.execute()]
    counts: list[HealthCount] = []
    for i, provider in enumerate(providers):
        live_r, live_n, dead, expired_r, expiring_r, expired_n, expiring_n = replies[7 * i : 7 * i + 7]
        found: dict[TokenHealth, int] = {
            TokenHealth.DEAD: dead,
            TokenHealth.REFRESHABLE: expired_r,
            TokenHealth.EXPIRED: expired_n,
            TokenHealth.EXPIRING: expiring_r + expiring_n,
            TokenHealth.FRESH: live_r + live_n - expired_r - expiring_r - expired_n - expiring_n,
        }
        counts.extend(HealthCount(provider, h, n) for h, n in sorted(found.items()) if n)
    return counts


async def token_counts(
    redis: Any,
    keys: CountKeys,
    query: tuple[float, float, str | None, int],
    load: Callable[[list[str]], Any],
) -> TokenCounts:
    """Tokens per provider by health at ``now``, and up to ``limit`` per provider needing attention.

    ``query`` is ``(now, within, provider, limit)``; ``load(keys)`` awaits to the readable tokens.
    """
    now, within, provider, limit = query
    until = now + within
    providers = sorted(p for p in map(_text, await redis.smembers(keys.providers)) if provider in (None, p))
    counts = await _health(redis, keys, providers, now, until)
    shown: list[Token] = []
    if limit and providers:
        pipe = redis.pipeline(transaction=False)
        for name in providers:
            refreshable, other, dead = keys.health(name)
            pipe.zrevrange(dead, 0, limit - 1)
            pipe.zrangebyscore(refreshable, "-inf", repr(until), start=0, num=limit)
            pipe.zrangebyscore(other, "-inf", repr(until), start=0, num=limit)
        replies = await pipe.execute()
        for i in range(len(providers)):
            found = [_text(k) for reply in replies[3 * i : 3 * i + 3] for k in reply]
            shown.extend(attention_order(await load(found))[:limit])
    return TokenCounts(counts=tuple(counts), tokens=tuple(shown))
