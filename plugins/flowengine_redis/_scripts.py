"""The Lua scripts of the Redis store: each check-and-write happens in one atomic step.

Redis runs a script to completion before serving any other client, so a
script that reads a version and then writes cannot interleave with another
worker's. Every key a script touches is passed in ``KEYS`` (never built from
a prefix inside the script), as Redis requires for scripts to be correct.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "CAS",
    "CREATE",
    "DELETE_FLOW",
    "PUT_TOKEN",
    "READ_FLOWS",
    "RELEASE",
    "RENEW",
]

# The counts of the operator's view (flowengine._stats) are written by the same scripts that
# write a flow, so they change atomically with it:
# - "in:{spec}:{state}": a sorted set of the ids of the flows in that state, scored by when Redis
#   drops the flow by itself (ms; +inf for never): a flow Redis dropped leaves the count at once
#   (ZCOUNT from the server's time), and a set cannot count one flow twice;
# - "states": the "{spec}:{state}" names of those sets;
# - "steps:{hour}": a hash of transitions in that hour, field "spec\x1fsource\x1fevent\x1fdest\x1ferror",
#   expiring when no window reaches it any more, and "step_hours" the hours that have one.
# STEP below takes ARGV[i..i+3]: the hour's key expiry (ms), the hour, the field, and '1' to count.
_STEP = """
local function count_step(key, hours_key, expire_ms, hour, field)
  redis.call('HINCRBY', key, field, 1)
  redis.call('PEXPIREAT', key, expire_ms)
  redis.call('ZADD', hours_key, hour, hour)
end
"""

# KEYS: flow hash, state key, flows index, expiry index, its "in:" set, "states", steps hash, "step_hours".
# ARGV: id, spec, state, state_hash, version, created_at, expires_at, blob, native expiry (ms, 0 = none),
# the "in:" set's member name, then the step: hash expiry (ms), hour, field, '1' to count it ('0': none).
# Returns 1 when written, 0 when the id is taken, -1 when the state digest is taken.
CREATE = (
    _STEP
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'spec', ARGV[2], 'state', ARGV[3], 'state_hash', ARGV[4],
           'version', ARGV[5], 'created_at', ARGV[6], 'expires_at', ARGV[7], 'blob', ARGV[8])
redis.call('SET', KEYS[2], ARGV[1])
if ARGV[9] ~= '0' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[9])
  redis.call('PEXPIREAT', KEYS[2], ARGV[9])
end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[9] == '0' and '+inf' or ARGV[9], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[10])
if ARGV[14] == '1' then count_step(KEYS[7], KEYS[8], ARGV[11], ARGV[12], ARGV[13]) end
return 1
"""
)

# KEYS: flow hash, state key, expiry index, the old state's "in:" set, the new one's, "states",
# steps hash, "step_hours".
# ARGV: expected version, id, spec, state, version, expires_at, blob, native expiry (ms, 0 = none),
# the old state (as the caller believes it), the new "in:" set's member name, then the step as CREATE.
# Returns 1 when written, 0 when the flow is gone or its version is not the expected one, and
# -1 (writing nothing) when the stored state is not the one the caller named: it reads it and retries.
# The state key is only re-timed, never re-pointed: a flow's state digest is fixed at create.
CAS = (
    _STEP
    + """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= ARGV[9] then return -1 end
redis.call('HSET', KEYS[1], 'spec', ARGV[3], 'state', ARGV[4], 'version', ARGV[5],
           'expires_at', ARGV[6], 'blob', ARGV[7])
local keep_state = redis.call('GET', KEYS[2]) == ARGV[2]
if ARGV[8] ~= '0' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[8])
  if keep_state then redis.call('PEXPIREAT', KEYS[2], ARGV[8]) end
else
  redis.call('PERSIST', KEYS[1])
  if keep_state then redis.call('PERSIST', KEYS[2]) end
end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[8] == '0' and '+inf' or ARGV[8], ARGV[2])
redis.call('SADD', KEYS[6], ARGV[10])
if ARGV[14] == '1' then count_step(KEYS[7], KEYS[8], ARGV[11], ARGV[12], ARGV[13]) end
return 1
"""
)

# KEYS: flow hash, state key, flows index, expiry index, the "in:" set of its state.
# ARGV: id, and optionally a time: then the flow is removed only if it still expires before it
# (a purge must not remove a flow whose expiry a compare-and-set moved since it was listed).
# Returns 1 when the flow was removed, 0 otherwise; the index entries go either way once it is gone.
DELETE_FLOW = """
if ARGV[2] then
  local expires_at = tonumber(redis.call('HGET', KEYS[1], 'expires_at'))
  if expires_at and expires_at >= tonumber(ARGV[2]) then return 0 end
end
local removed = redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return removed
"""

# KEYS: token hash, "tokens", "tokens:{provider}", its live refreshable, live not refreshable and dead
# sets ("health:{provider}:r|n|dead"), "providers".
# ARGV: key, provider, expires_at ('' for none), blob, index score, which health set (1, 2 or 3),
# the score in that set (expiry, or when it died), counted ('1'; '0' for a token that is being
# classified: then ARGV[4] is the blob it was classified from, and nothing is written if it changed).
PUT_TOKEN = """
if ARGV[8] == '0' then
  if redis.call('HGET', KEYS[1], 'blob') ~= ARGV[4] then return 0 end
else
  redis.call('HSET', KEYS[1], 'provider', ARGV[2], 'expires_at', ARGV[3], 'blob', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
end
for i = 4, 6 do
  if i - 3 == tonumber(ARGV[6]) then redis.call('ZADD', KEYS[i], ARGV[7], ARGV[1])
  else redis.call('ZREM', KEYS[i], ARGV[1]) end
end
redis.call('SADD', KEYS[7], ARGV[2])
return 1
"""  # noqa: S105 - a script, not a password

# KEYS: flows index, expiry index, then one flow hash per id.
# ARGV: '1' or '0' (filter on spec?), spec, '1' or '0' (filter on state?), state, then the ids.
# Returns one entry per id: 0 gone (its index entries are pruned here, atomically with the
# check, so a flow created meanwhile cannot lose its entry), 1 filtered out, 2 no record, or
# the record's bytes. Filtering on the clear fields here means non-matching records are never
# sent, let alone decrypted. Callers pass a bounded number of ids so no call blocks Redis for long.
READ_FLOWS = """
local result = {}
for i = 3, #KEYS do
  local id = ARGV[i + 2]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    result[#result + 1] = 0
  else
    local fields = redis.call('HMGET', KEYS[i], 'spec', 'state', 'blob')
    if (ARGV[1] == '1' and fields[1] ~= ARGV[2]) or (ARGV[3] == '1' and fields[2] ~= ARGV[4]) then
      result[#result + 1] = 1
    elseif not fields[3] then
      result[#result + 1] = 2
    else
      result[#result + 1] = fields[3]
    end
  end
end
return result
"""

# KEYS: lease key. ARGV: owner token. Deletes the lease only while this owner still holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease key. ARGV: owner token, ttl (ms). Takes the lease unless another holds it, timed by
# Redis's own expiry; returns the server's TIME (seconds, microseconds) when taken, else false.
ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return redis.call('TIME') end
return false
"""

# KEYS: lease key. ARGV: owner token, ttl (ms). Extends the lease only while this owner still holds
# it (an expired lease is already gone from Redis); returns the server's TIME when renewed, else false.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return redis.call('TIME')
end
return false
"""
