"""The fleet's rate limiter in Redis: a sorted set of calls and a hash of state per bucket, Lua steps.

Each step is one Lua script, so Redis runs it atomically with its own clock
(``TIME``): ``take`` drops calls that left the window, decides, and adds the
call to every bucket or to none. Keys live under the prefix of the store's
URL (``?prefix=``, default ``flowengine:``) and expire when a bucket is idle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowengine import RateFeedback

from ._limiter import Bucket

__all__ = ["RedisLimiter"]

#: Options of flowengine's Redis store URL that redis-py does not know.
_STORE_OPTIONS = ("prefix", "key_file", "retention", "timeout")

# Shared by the scripts: the wait one bucket imposes (KEYS: calls, state; lim < 0 means no count).
_WAIT = """
local function wait_of(calls, state, lim, period, now)
    redis.call('ZREMRANGEBYSCORE', calls, '-inf', now - period)
    local st = redis.call('HMGET', state, 'blocked_until', 'lowered', 'lowered_until', 'budget',
                          'budget_until')
    local w = 0
    local blocked, lowered, lowered_until = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
    local budget, budget_until = tonumber(st[4]), tonumber(st[5])
    if blocked and blocked > now then w = blocked - now end
    if lowered and lowered_until and lowered_until > now and (lim < 0 or lowered < lim) then lim = lowered end
    if budget and budget_until and budget_until > now and budget <= 0 then
        w = math.max(w, budget_until - now)
    end
    if lim >= 0 and redis.call('ZCARD', calls) >= lim then
        local first = tonumber(redis.call('ZRANGE', calls, 0, 0, 'WITHSCORES')[2])
        if first <= now then w = math.max(w, first + period - now) else return -1 end
    end
    return w
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: calls1, state1, calls2, state2, ...; ARGV: permit, hold, then lim, period per bucket.
_TAKE = (
    _WAIT
    + """
local permit, hold = ARGV[1], tonumber(ARGV[2])
local wait = 0
for i = 1, #KEYS / 2 do
    local w = wait_of(KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i]), now)
    if w < 0 then wait = -1 elseif wait >= 0 then wait = math.max(wait, w) end
end
if wait ~= 0 then return tostring(wait) end
for i = 1, #KEYS / 2 do
    local period = tonumber(ARGV[2 + 2 * i])
    redis.call('ZADD', KEYS[2 * i - 1], now + hold, permit)
    redis.call('EXPIRE', KEYS[2 * i - 1], math.ceil(hold + period) + 60)
    local st = redis.call('HMGET', KEYS[2 * i], 'budget', 'budget_until')
    if st[1] and tonumber(st[2]) > now then redis.call('HINCRBY', KEYS[2 * i], 'budget', -1) end
end
return '0'
"""
)

# KEYS: calls of each bucket; ARGV: permit, sent ('1' or '0'), then the period of each bucket.
_FINISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #KEYS do
    if ARGV[2] == '1' then
        redis.call('ZADD', KEYS[i], now, ARGV[1])
        redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 + i])) + 60)
    else
        redis.call('ZREM', KEYS[i], ARGV[1])
    end
end
return 1
"""

# KEYS: calls, state; ARGV: lim, period, lowered, remaining, pause ('' when absent).
_OBSERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lim, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local lowered, remaining, pause = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local st = redis.call('HMGET', KEYS[2], 'lowered', 'lowered_until', 'blocked_until')
if lowered and (lim < 0 or lowered < lim) then
    redis.call('HSET', KEYS[2], 'lowered', lowered, 'lowered_until', now + period)
    lim = lowered
elseif tonumber(st[1]) and tonumber(st[2]) > now and (lim < 0 or tonumber(st[1]) < lim) then
    lim = tonumber(st[1])
end
if remaining and lim >= 0 then
    local n = redis.call('ZCOUNT', KEYS[1], '(' .. (now - period), '+inf')
    if remaining < lim - n then
        redis.call('HSET', KEYS[2], 'budget', remaining, 'budget_until', now + period)
    end
end
if pause then
    redis.call('HSET', KEYS[2], 'blocked_until', math.max(tonumber(st[3]) or 0, now + pause))
end
redis.call('EXPIRE', KEYS[2], math.ceil(period + (pause or 0)) + 60)
return 1
"""

# KEYS: calls, state; ARGV: seconds.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[2], 'blocked_until', now + tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[1])) + 60)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""

# KEYS: calls.
_IN_FLIGHT = """
local t = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[1], '(' .. (tonumber(t[1]) + tonumber(t[2]) / 1000000), '+inf')
"""


def _client_url(url: str) -> tuple[str, str]:
    """The URL for redis-py (flowengine's own options removed) and the key prefix."""
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    prefix = dict(options).get("prefix") or "flowengine:"
    kept = [(name, value) for name, value in options if name not in _STORE_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix


def _limit(bucket: Bucket) -> str:
    return "-1" if bucket.calls is None else str(bucket.calls)


def _optional(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isinf(value)) else repr(value)


class RedisLimiter:
    """``LimiterBackend`` on Redis: a client per process, one script call per step."""

    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self.prefix = prefix
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisLimiter:
        """From a ``redis://`` URL: the store's URL works (its ``prefix=`` is used)."""
        return cls(*_client_url(url))

    def __repr__(self) -> str:
        return f"RedisLimiter(prefix={self.prefix!r})"

    def _keys(self, bucket: Bucket) -> list[str]:
        return [f"{self.prefix}rate:{bucket.name}:calls", f"{self.prefix}rate:{bucket.name}:state"]

    async def _run(self, name: str, source: str, keys: list[str], args: list[str]) -> Any:
        if self._client is None:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(self._url)
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(source)
        return await script(keys=keys, args=args)

    async def take(self, buckets: Sequence[Bucket], permit: str, hold: float) -> float:
        """See ``LimiterBackend.take``."""
        keys = [key for bucket in buckets for key in self._keys(bucket)]
        args = [permit, repr(hold)] + [value for b in buckets for value in (_limit(b), repr(b.period))]
        wait = float(await self._run("take", _TAKE, keys, args))
        return math.inf if wait < 0 else wait

    async def finish(self, buckets: Sequence[Bucket], permit: str, *, sent: bool) -> None:
        """See ``LimiterBackend.finish``."""
        keys = [self._keys(bucket)[0] for bucket in buckets]
        await self._run(
            "finish", _FINISH, keys, [permit, "1" if sent else "0", *(repr(b.period) for b in buckets)]
        )

    async def observe(self, bucket: Bucket, feedback: RateFeedback) -> None:
        """See ``LimiterBackend.observe``."""
        args = [
            _limit(bucket),
            repr(bucket.period),
            *map(_optional, (feedback.limit, feedback.remaining, feedback.pause)),
        ]
        await self._run("observe", _OBSERVE, self._keys(bucket), args)

    async def pause(self, bucket: Bucket, seconds: float) -> None:
        """See ``LimiterBackend.pause``."""
        await self._run("pause", _PAUSE, self._keys(bucket), [repr(seconds)])

    async def in_flight(self, bucket: Bucket) -> int:
        """See ``LimiterBackend.in_flight``."""
        return int(await self._run("in_flight", _IN_FLIGHT, self._keys(bucket)[:1], []))

    async def aclose(self) -> None:
        """See ``LimiterBackend.aclose``."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
