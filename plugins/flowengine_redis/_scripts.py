"""The Lua scripts of the Redis store: each check-and-write happens in one atomic step.

Redis runs a script to completion before serving any other client, so a
script that reads a version and then writes cannot interleave with another
worker's. Every key a script touches is passed in ``KEYS`` (never built from
a prefix inside the script), as Redis requires for scripts to be correct.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "CAS", "CREATE", "DELETE_FLOW", "READ_FLOWS", "RELEASE", "RENEW"]

# KEYS: flow hash, state key, flows index, expiry index.
# ARGV: id, spec, state, state_hash, version, created_at, expires_at, blob, native expiry (ms, 0 = none).
# Returns 1 when written, 0 when the id is taken, -1 when the state digest is taken.
CREATE = """
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
return 1
"""

# KEYS: flow hash, state key, expiry index.
# ARGV: expected version, id, spec, state, version, expires_at, blob, native expiry (ms, 0 = none).
# Returns 1 when written, 0 when the flow is gone or its version is not the expected one.
# The state key is only re-timed, never re-pointed: a flow's state digest is fixed at create.
CAS = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
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
return 1
"""

# KEYS: flow hash, state key, flows index, expiry index.
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
return removed
"""

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
