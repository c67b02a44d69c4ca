"""The Lua scripts behind the Redis store: each multi-step change runs atomically inside Redis.

Integers go to Redis commands through `string.format('%d', ...)`: Lua would otherwise format large
numbers as `1.2e+14`, which `HINCRBY` refuses. Counter keys of a reservation are derived from the
key prefix (ARGV) at settle time, so these scripts assume one Redis node, not a cluster.
"""

from __future__ import annotations

# Reservations and settlements are group-committed: concurrent calls of one process share one
# script call (see redis_store.GroupCommit), each item still all-or-nothing on its own.
#
# ARGV[1]: key prefix, then four arguments per reservation: id, expiry (epoch seconds), meta JSON ('' none)
# and its charges as JSON [[counter, amount, unit, limit or null, counter expiry in epoch seconds or null],
# ...], stored as sent for settlement. Flat arguments rather than one JSON document: nothing is encoded
# twice, and the bytes sent per reservation (a syscall's worth of the gateway's CPU) are halved.
# Returns one {ok, refused index (1-based, 0 if ok), used1, reserved1, leased1, ...} per reservation.
RESERVE_MANY = """
local p = ARGV[1]
local results = {}
local null = cjson.null
for a = 2, #ARGV, 4 do
  local id, cj = ARGV[a], ARGV[a + 3]
  local ch = cjson.decode(cj)
  local n = #ch
  local used, res = {}, {}
  local leased = {}
  for i = 1, n do
    local v = redis.call('HMGET', p .. 'c:' .. ch[i][1], 'u', 'r', 'l')
    used[i] = tonumber(v[1] or '0')
    res[i] = tonumber(v[2] or '0')
    leased[i] = tonumber(v[3] or '0')
  end
  local ok, idx = 1, 0
  local rkey = p .. 'r:' .. id
  if redis.call('EXISTS', rkey) == 0 then
    for i = 1, n do
      local limit = ch[i][4]
      if limit ~= null and used[i] + res[i] + ch[i][2] > limit then
        ok, idx = 0, i
        break
      end
    end
    if ok == 1 then
      for i = 1, n do
        local key = p .. 'c:' .. ch[i][1]
        res[i] = redis.call('HINCRBY', key, 'r', string.format('%d', ch[i][2]))
        local expires = ch[i][5]
        -- A counter's expiry is fixed by its name (its window), so it is set when the counter
        -- appears (at 0/0) and not again: each call from Lua costs Redis a few microseconds.
        if expires ~= null and used[i] == 0 and res[i] == ch[i][2] then
          redis.call('PEXPIREAT', key, string.format('%d', math.floor(expires * 1000)))
        end
      end
      redis.call('HSET', rkey, 'c', cj, 'm', ARGV[a + 2])
      redis.call('ZADD', p .. 'rexp', ARGV[a + 1], id)
    end
  end
  local out = {ok, idx}
  for i = 1, n do
    out[#out + 1] = used[i]
    out[#out + 1] = res[i]
    out[#out + 1] = leased[i]
  end
  results[#results + 1] = out
end
return results
"""

# ARGV[1]: JSON array of [reservation id, {unit: actual amount}, swept (1: charge reserved amounts),
# now (a string, so the ledger keeps the caller's exact time)]. ARGV[2]: key prefix.
# Returns one {settled, name1, used1, reserved1, charged1, ...} per item.
SETTLE_MANY = """
local items = cjson.decode(ARGV[1])
local p = ARGV[2]
local results = {}
for k, item in ipairs(items) do
  local id, actual, swept, now = item[1], item[2], item[3] == 1, item[4]
  local rkey = p .. 'r:' .. id
  local data = redis.call('HMGET', rkey, 'c', 'm', 'k')
  local lease = data[3] == '1'
  if not data[1] then
    results[k] = {0}
  else
    local charges = cjson.decode(data[1])
    local out = {1}
    local units, charged = {}, {}
    for _, c in ipairs(charges) do
      local name, amount, unit, expires = c[1], c[2], c[3], c[5]
      local a = amount
      if not swept and actual[unit] ~= nil then a = actual[unit] end
      local key = p .. 'c:' .. name
      local u = redis.call('HINCRBY', key, 'u', string.format('%d', a))
      local r = redis.call('HINCRBY', key, 'r', string.format('%d', -amount))
      if lease and amount ~= 0 and redis.call('HINCRBY', key, 'l', string.format('%d', -amount)) < 0 then
        redis.call('HSET', key, 'l', '0')  -- a lease swept: its room is no longer leased
      end
      if r < 0 then
        -- The counter was gone (or out of step): repair it, and give it back its expiry, which
        -- otherwise the reservation set when it created the counter.
        redis.call('HSET', key, 'r', '0')
        r = 0
        if type(expires) == 'number' then
          redis.call('PEXPIREAT', key, string.format('%d', math.floor(expires * 1000)))
        end
      end
      out[#out + 1] = name
      out[#out + 1] = u
      out[#out + 1] = r
      out[#out + 1] = a
      if charged[unit] == nil then
        charged[unit] = a
        units[#units + 1] = cjson.encode(unit) .. ':' .. string.format('%d', a)
      end
    end
    redis.call('DEL', rkey)
    redis.call('ZREM', p .. 'rexp', id)
    if data[2] and data[2] ~= '' then
      local entry = '{"ts":' .. now .. ',"id":' .. cjson.encode(id) .. ',"meta":' .. data[2]
        .. ',"charged":{' .. table.concat(units, ',') .. '},"swept":' .. (swept and 'true' or 'false') .. '}'
      redis.call('ZADD', p .. 'ledger', now, entry)
    end
    results[k] = out
  end
end
return results
"""

# Leases (see base.LeaseUpdate), group-committed like reservations. ARGV[1]: key prefix; then per
# update: its spec as JSON [id, seq, record expiry, meta JSON or '', headroom, units, spent, release,
# want, min_grant, counters [[name, unit index (1-based), limit or null, counter expiry or null], ...]],
# the number n of its ledger entries, and 2n arguments (score, entry JSON) for ZADD.
# The lease record has the reservations' shape (charges with the amount the lease holds on each
# counter, meta), plus its last seq and k=1, so the sweeper charges an expired lease like any
# reservation. Amounts are formatted with %d: cjson would print 14 significant digits.
# Returns one {status (1 applied, 2 repeat, 0 gone), held per unit..., granted per unit...,
# used1, reserved1, leased1, ...} per update.
LEASE_MANY = """
local p = ARGV[1]
local null = cjson.null
local results = {}
local function num(x)
  if x == null or x == nil then return 'null' end
  if x == math.floor(x) then return string.format('%d', x) end
  return string.format('%.17g', x)
end
local a = 2
while a <= #ARGV do
  local spec = cjson.decode(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  local e1 = a + 2
  a = e1 + 2 * n
  local id, seq, expires, meta, headroom = spec[1], spec[2], spec[3], spec[4], spec[5]
  local units, spent, release, want, mins, ch = spec[6], spec[7], spec[8], spec[9], spec[10], spec[11]
  local nu, nc = #units, #ch
  local rkey = p .. 'r:' .. id
  local rec = redis.call('HMGET', rkey, 'c', 's')
  local held, granted = {}, {}
  for k = 1, nu do held[k] = 0; granted[k] = 0 end
  local status = 1
  if rec[1] then
    for _, c in ipairs(cjson.decode(rec[1])) do
      for k = 1, nu do
        if units[k] == c[3] then held[k] = c[2] end
      end
    end
    if seq <= tonumber(rec[2] or '0') then status = 2 end
  elseif seq > 1 then
    status = 0
  end
  if status == 0 then
    results[#results + 1] = {0}
  else
    local u, r, l, fresh = {}, {}, {}, {}
    for i = 1, nc do
      local v = redis.call('HMGET', p .. 'c:' .. ch[i][1], 'u', 'r', 'l')
      u[i], r[i], l[i] = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')
      fresh[i] = not v[1] and not v[2]
    end
    if status == 1 then
      -- Spent leaves the lease for `used`; released room leaves it; then the optional growth.
      local du, dr = {}, {}
      for k = 1, nu do
        local from = math.min(spent[k], held[k])
        local rel = math.max(0, math.min(release[k], held[k] - from))
        held[k] = held[k] - from - rel
        du[k], dr[k] = spent[k], -from - rel
      end
      local asked = false
      for k = 1, nu do
        granted[k] = want[k]
        if want[k] > 0 then asked = true end
      end
      if asked then
        for i = 1, nc do
          local limit = ch[i][3]
          if limit ~= null then
            local k = ch[i][2]
            local room = limit - (u[i] + du[k]) - (r[i] + dr[k])
            local allowed = math.max(0, math.floor(room / (headroom + 1)))
            if allowed < granted[k] then granted[k] = allowed end
          end
        end
        for k = 1, nu do
          if want[k] > 0 and granted[k] < mins[k] then asked = false end
        end
        if not asked then
          for k = 1, nu do granted[k] = 0 end
        end
      end
      for i = 1, nc do
        local k = ch[i][2]
        local key = p .. 'c:' .. ch[i][1]
        local d = dr[k] + granted[k]
        if du[k] ~= 0 then u[i] = redis.call('HINCRBY', key, 'u', string.format('%d', du[k])) end
        if d ~= 0 then
          r[i] = redis.call('HINCRBY', key, 'r', string.format('%d', d))
          l[i] = redis.call('HINCRBY', key, 'l', string.format('%d', d))
          if r[i] < 0 or l[i] < 0 then
            -- The counter was gone (expired with its window) or out of step: repair it.
            r[i], l[i] = math.max(0, r[i]), math.max(0, l[i])
            redis.call('HSET', key, 'r', string.format('%d', r[i]), 'l', string.format('%d', l[i]))
          end
        end
        if fresh[i] and (du[k] ~= 0 or d ~= 0) and ch[i][4] ~= null then
          redis.call('PEXPIREAT', key, string.format('%d', math.floor(ch[i][4] * 1000)))
        end
      end
      local total = 0
      for k = 1, nu do
        held[k] = held[k] + granted[k]
        total = total + held[k]
      end
      if total == 0 then
        redis.call('DEL', rkey)
        redis.call('ZREM', p .. 'rexp', id)
      else
        local parts = {}
        for i = 1, nc do
          local k = ch[i][2]
          parts[i] = '[' .. cjson.encode(ch[i][1]) .. ',' .. num(held[k]) .. ',' .. cjson.encode(units[k]) .. ','
            .. num(ch[i][3]) .. ',' .. num(ch[i][4]) .. ']'
        end
        redis.call('HSET', rkey, 'c', '[' .. table.concat(parts, ',') .. ']', 'm', meta, 's', string.format('%d', seq),
          'k', '1')
        redis.call('ZADD', p .. 'rexp', num(expires), id)
      end
      local last = e1 + 2 * n - 1
      for j = e1, last, 1000 do
        redis.call('ZADD', p .. 'ledger', unpack(ARGV, j, math.min(j + 999, last)))
      end
    end
    local out = {status}
    for k = 1, nu do out[#out + 1] = held[k] end
    for k = 1, nu do out[#out + 1] = granted[k] end
    for i = 1, nc do
      out[#out + 1] = u[i]
      out[#out + 1] = r[i]
      out[#out + 1] = l[i]
    end
    results[#results + 1] = out
  end
end
return results
"""

# KEYS: document key, namespace index. ARGV: expected version ('' none), value, now, expires_at
# ('' none), document key name. Returns {ok, version}.
DOC_PUT = """
local cur = redis.call('HMGET', KEYS[1], 'v', 'e')
local v = tonumber(cur[1] or '0')
if cur[2] and cur[2] ~= '' and tonumber(cur[2]) <= tonumber(ARGV[3]) then v = 0 end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= v then return {0, v} end
v = v + 1
redis.call('HSET', KEYS[1], 'v', string.format('%d', v), 'd', ARGV[2], 'e', ARGV[4])
if ARGV[4] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], string.format('%d', math.floor(tonumber(ARGV[4]) * 1000) + 60000))
else
  redis.call('PERSIST', KEYS[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[5])
return {1, v}
"""

# KEYS: document key, namespace index. ARGV: expected version ('' none), document key name.
# Returns {deleted, found version} (deleted -1: version conflict).
DOC_DELETE = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= v then return {-1, v} end
redis.call('ZREM', KEYS[2], ARGV[2])
if v == 0 then return {0, 0} end
redis.call('DEL', KEYS[1])
return {1, v}
"""

# KEYS: audit list, audit head. ARGV: expected current seq, record json, new seq, new hash.
# Appends only if nobody appended since the caller read the head (the caller retries).
# The entries after `after_seq`: a list index is a seq less the anchor (entries deleted from the front),
# read with the anchor in one step so a concurrent prune cannot shift the window.
AUDIT_RANGE = """
local anchor = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local start = math.max(tonumber(ARGV[1]) - anchor, 0)
return redis.call('LRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)
"""

# Delete the first ARGV[2] entries and move the anchor to ARGV[3]/ARGV[4], if the anchor is still
# ARGV[1] (another replica pruning at the same time moved it: nothing is done, 0 is returned).
AUDIT_PRUNE = """
local anchor = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if anchor ~= tonumber(ARGV[1]) then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'hash', ARGV[4])
return 1
"""

AUDIT_APPEND = """
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if seq ~= tonumber(ARGV[1]) then return 0 end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[2], 'seq', ARGV[2], 'hash', ARGV[3])
return 1
"""
