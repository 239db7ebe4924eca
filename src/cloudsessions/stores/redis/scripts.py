"""The server-side scripts that make each write one atomic round trip, and the key layout.

A session is one hash, ``<prefix>s:<record id>``:

    e         its expiry, epoch seconds (the key also expires natively, PEXPIREAT)
    u         its user id, absent for an anonymous session
    m         its metadata's JSON text (cloudsessions.metadata), absent for an anonymous
              session and on sessions written before metadata existed
    o         the session's keys in their order, comma-separated (a hash has no order;
              encoded field names never hold a comma)
    d:<f>     the JSON text of session key f (see codec: f is an encoded field name)
    c:<f>     a counter (Store.increment), a native integer HINCRBY adds to

The one-letter names are ours: a session key's field always holds a colon (d:, c:).

A user's sessions are one sorted set, ``<prefix>u:<user id>``: record ids scored by their
expiry, so for_user() is one range query and entries of expired sessions fall out of it.

On a standalone server the scripts keep that index in the same atomic step (ARGV "index"
is the index key prefix). A Redis Cluster cannot change two slots in one step, and a user's
sessions live on many slots: there the scripts touch only the session (index = "") and the
store updates the index with a command of its own (see store.py).
"""

from __future__ import annotations

import hashlib
from typing import Literal

# Shared by the scripts: the session's key order, read and written as a Lua list.
_ORDER = """
local function order_of(key)
  local list, seen = {}, {}
  for f in string.gmatch(redis.call('HGET', key, 'o') or '', '[^,]+') do
    list[#list + 1] = f
    seen[f] = true
  end
  return list, seen
end
local function order_put(key, list)
  redis.call('HSET', key, 'o', table.concat(list, ','))
end
"""

# Shared by save and increment: the session exists and has not expired (by our clock).
_LIVE = """
local function live(key, now_s)
  local e = redis.call('HGET', key, 'e')
  return e and tonumber(e) > tonumber(now_s)
end
"""

# Shared by the scripts: record the session `rid` in its user's index, scored by its
# expiry, dropping entries that have expired; the index expires with its last session.
_INDEX_PUT = """
local function index_put(idx, rid, expires_s, expires_ms, now_s)
  redis.call('ZADD', idx, expires_s, rid)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now_s)
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', idx, math.ceil(tonumber(last[2]) * 1000))
  end
end
"""

# Every script starts with the helpers (Lua local functions; unused ones cost nothing).
_HELPERS = _ORDER + _LIVE + _INDEX_PUT

# KEYS: session. ARGV: now_s, expires_s, expires_ms, user ("" = none), index, rid,
# meta ("" = none), then field/value pairs (the d:<f> names). Returns 1, or 0 if the id
# is taken.
CREATE = (
    _HELPERS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[2])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'm', ARGV[7]) end
local order = {}
for i = 8, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  order[#order + 1] = string.sub(ARGV[i], 3)
end
order_put(KEYS[1], order)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'u', ARGV[4]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
if ARGV[5] ~= '' and ARGV[4] ~= '' then
  index_put(ARGV[5] .. ARGV[4], ARGV[6], ARGV[2], ARGV[3], ARGV[1])
end
return 1
"""
)

# KEYS: session. ARGV: now_s, expires_s, expires_ms, user, index, rid, meta ("" leaves
# the stored one), count of set fields n, then n field/value pairs (d:<f>), then removed
# fields (bare <f>). Returns 0 if the session is gone (absent, or expired by our clock),
# else 1.
SAVE = (
    _HELPERS
    + """
if not live(KEYS[1], ARGV[1]) then return 0 end
local old = redis.call('HGET', KEYS[1], 'u') or ''
local order, seen = order_of(KEYS[1])
local n = tonumber(ARGV[8])
for i = 9, 8 + 2 * n, 2 do
  local f = string.sub(ARGV[i], 3)
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HDEL', KEYS[1], 'c:' .. f)
  if not seen[f] then
    order[#order + 1] = f
    seen[f] = true
  end
end
local removed = {}
for i = 9 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[1], 'd:' .. ARGV[i], 'c:' .. ARGV[i])
  removed[ARGV[i]] = true
end
local kept = {}
for _, f in ipairs(order) do
  if not removed[f] then kept[#kept + 1] = f end
end
order_put(KEYS[1], kept)
redis.call('HSET', KEYS[1], 'e', ARGV[2])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'm', ARGV[7]) end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'u', ARGV[4])
else
  redis.call('HDEL', KEYS[1], 'u')
end
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
if ARGV[5] ~= '' then
  if old ~= '' and old ~= ARGV[4] then redis.call('ZREM', ARGV[5] .. old, ARGV[6]) end
  if ARGV[4] ~= '' then index_put(ARGV[5] .. ARGV[4], ARGV[6], ARGV[2], ARGV[3], ARGV[1]) end
end
return 1
"""
)

# KEYS: session. ARGV: now_s, expires_s, expires_ms, field, delta, base, index, rid.
# Returns {0} if gone, else {1, new value, user}.
INCREMENT = (
    _HELPERS
    + """
if not live(KEYS[1], ARGV[1]) then return {0} end
local counter = 'c:' .. ARGV[4]
if redis.call('HEXISTS', KEYS[1], counter) == 0 then
  redis.call('HSET', KEYS[1], counter, ARGV[6])
  redis.call('HDEL', KEYS[1], 'd:' .. ARGV[4])
  local order, seen = order_of(KEYS[1])
  if not seen[ARGV[4]] then
    order[#order + 1] = ARGV[4]
    order_put(KEYS[1], order)
  end
end
local value = redis.call('HINCRBY', KEYS[1], counter, ARGV[5])
redis.call('HSET', KEYS[1], 'e', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
local user = redis.call('HGET', KEYS[1], 'u') or ''
if ARGV[7] ~= '' and user ~= '' then
  index_put(ARGV[7] .. user, ARGV[8], ARGV[2], ARGV[3], ARGV[1])
end
return {1, value, user}
"""
)

# KEYS: session. ARGV: index ("" on a cluster: for_user drops the entry), rid.
DELETE = """
local user = redis.call('HGET', KEYS[1], 'u') or ''
redis.call('UNLINK', KEYS[1])
if ARGV[1] ~= '' and user ~= '' then redis.call('ZREM', ARGV[1] .. user, ARGV[2]) end
return 1
"""

# KEYS: session. ARGV: user, index ("" on a cluster: the store removes the entry itself),
# rid. Deletes the session only if it is the user's; returns 1 if it did, else 0.
REVOKE = """
if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[1])
if ARGV[2] ~= '' then redis.call('ZREM', ARGV[2] .. ARGV[1], ARGV[3]) end
return 1
"""

# Standalone only; reads, never writes. KEYS: a user's index. ARGV: session key prefix,
# now_s, user. Returns {rid, expires_s, meta ("" = none), ...} of the user's live sessions:
# the listing with each session's metadata in one round trip. (The scripts keep the index
# exact; a session evicted by a maxmemory policy is left out all the same.)
SESSIONS_OF = """
local found = {}
local entries = redis.call('ZRANGE', KEYS[1], ARGV[2], '+inf', 'BYSCORE')
for _, rid in ipairs(entries) do
  local fields = redis.call('HMGET', ARGV[1] .. rid, 'e', 'u', 'm')
  if fields[1] and fields[2] == ARGV[3] then
    found[#found + 1] = rid
    found[#found + 1] = fields[1]
    found[#found + 1] = fields[3] or ''
  end
end
return found
"""

# Cluster only, before a signed-in session's write. KEYS: the user's index.
# ARGV: rid, expires_s, expires_ms, now_s.
INDEX_PUT = (
    _HELPERS
    + """
index_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""
)

# Standalone only. KEYS: a user's index. ARGV: session key prefix, rid to keep ("" = none).
# Deletes the user's sessions but `keep`; returns how many were live.
DELETE_FOR_USER = """
local removed = {}
for _, rid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if rid ~= ARGV[2] then
    if redis.call('UNLINK', ARGV[1] .. rid) == 1 then
      removed[#removed + 1] = rid
    end
    redis.call('ZREM', KEYS[1], rid)
  end
end
return removed
"""

Kind = Literal["read", "write"]

SOURCES: dict[str, str] = {
    "create": CREATE,
    "save": SAVE,
    "increment": INCREMENT,
    "delete": DELETE,
    "delete_for_user": DELETE_FOR_USER,
    "index_put": INDEX_PUT,
    "revoke": REVOKE,
    "sessions_of": SESSIONS_OF,
}

_READ_ONLY = {"sessions_of"}

SCRIPTS: dict[str, tuple[str, Kind]] = {
    hashlib.sha1(source.encode()).hexdigest(): (  # noqa: S324 - Redis's script id
        name,
        "read" if name in _READ_ONLY else "write",
    )
    for name, source in SOURCES.items()
}
"""SHA1 (the id EVALSHA names a script by) -> (name, kind), for instrumentation."""
