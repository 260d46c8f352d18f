"""The Lua scripts that make each read-modify-write one atomic step on the Redis server.

Every writing script takes KEYS[1] = the change stream, KEYS[2] = the key counter, then the
data keys; ARGV[1] = the stream's length bound (watch_backlog).  On a cluster the stream and
the counter are those of the data key's slot (named with a hash tag of that slot), so each
script touches one slot, as Redis Cluster requires.  A change and its stream entry are
written by the same script: a watcher never sees one without the other.  Stream entries:
k = the data key (namespace prefix included), v = the new value, absent for a delete.
"""

# The stream is trimmed by XDEL of its oldest entries, not by XADD's MAXLEN, whose trim
# leaves no trace: XDEL moves the stream's max-deleted-entry-id, by which a watcher that
# fell behind the trim knows it (mmkv/_redis_watch.py).
_HELPERS = """
local function log(k, v)
  if v then
    redis.call('XADD', KEYS[1], '*', 'k', k, 'v', v)
  else
    redis.call('XADD', KEYS[1], '*', 'k', k)
  end
  local over = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
  if over > 0 then
    for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', over)) do
      redis.call('XDEL', KEYS[1], e[1])
    end
  end
end
local function put(k, v)
  if redis.call('EXISTS', k) == 0 then redis.call('INCR', KEYS[2]) end
  redis.call('SET', k, v)
  log(k, v)
end
local function del(k)
  if redis.call('DEL', k) == 0 then return false end
  redis.call('DECR', KEYS[2])
  log(k, false)
  return true
end
"""

# ARGV[2] = value
PUT = _HELPERS + "put(KEYS[3], ARGV[2]) return 1"

DELETE = _HELPERS + "if del(KEYS[3]) then return 1 end return 0"

# returns {value} or nil
POP = _HELPERS + """
local v = redis.call('GET', KEYS[3])
if not v then return false end
del(KEYS[3])
return {v}
"""

# ARGV[2] = default; returns {value, inserted}
SETDEFAULT = _HELPERS + """
local v = redis.call('GET', KEYS[3])
if v then return {v, 0} end
put(KEYS[3], ARGV[2])
return {ARGV[2], 1}
"""

# ARGV[2] = delta; returns the new value as a decimal string
INCR = _HELPERS + """
local existed = redis.call('EXISTS', KEYS[3])
local ok, err = pcall(redis.call, 'INCRBY', KEYS[3], ARGV[2])
if not ok then
  return redis.error_reply('mmkv-not-an-integer: ' .. (err.err or tostring(err)))
end
if existed == 0 then redis.call('INCR', KEYS[2]) end
local v = redis.call('GET', KEYS[3])
log(KEYS[3], v)
return v
"""

# ARGV[2] = '1' if an expected value is given ('0': expected absent), ARGV[3] = expected,
# ARGV[4] = '1' if a new value is given ('0': delete), ARGV[5] = new; returns 1 if swapped
CAS = _HELPERS + """
local v = redis.call('GET', KEYS[3])
if ARGV[2] == '0' then
  if v then return 0 end
elseif v ~= ARGV[3] then
  return 0
end
if ARGV[4] == '0' then
  if v then del(KEYS[3]) end
else
  put(KEYS[3], ARGV[5])
end
return 1
"""

# one server only: KEYS[3..] data keys, ARGV[2..] their values, all in one step
SET_MANY = _HELPERS + """
for i = 3, #KEYS do put(KEYS[i], ARGV[i - 1]) end
return #KEYS - 2
"""

# one server only: KEYS[3..] data keys; returns how many were present
DELETE_MANY = _HELPERS + """
local n = 0
for i = 3, #KEYS do if del(KEYS[i]) then n = n + 1 end end
return n
"""

# The lease: KEYS[1] = lease key, KEYS[2] = fencing counter (same hash tag, same slot).
# ARGV[1] = holder id, ARGV[2] = lease in ms.  Returns the fencing token, or 0 if held.
LEASE_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local f = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. f, 'PX', ARGV[2])
return f
"""

# ARGV[1] = holder id with its token; 1 if renewed (still ours)
LEASE_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# The watcher's read, in one step so a trim cannot slip between the check and the read:
# KEYS[1] = stream, ARGV[1] = the last id seen, ARGV[2] = batch size.
# Returns {max deleted id, entries after ARGV[1]}.
WATCH_READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local md = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then md = info[i + 1] end
end
return {md, redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])}
"""

# Sum of per-slot counters on one cluster node: ARGV = the counters of the slots it owns.
# Redis 7 refuses declared KEYS of several slots even with allow-cross-slot-keys, but lets
# the flagged script read undeclared keys of any slot that this node serves.
COUNT_SUM = """#!lua flags=no-writes,allow-cross-slot-keys
local n = 0
for i = 1, #ARGV do n = n + tonumber(redis.call('GET', ARGV[i]) or '0') end
return n
"""
