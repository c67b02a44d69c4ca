"""The Lua scripts behind the Redis store: each multi-step change runs atomically inside Redis.

Integers go to Redis commands through `string.format('%d', ...)`: Lua would otherwise format large
numbers as `1.2e+14`, which `HINCRBY` refuses. Counter keys of a reservation are derived from the
key prefix (ARGV) at settle time, so these scripts assume one Redis node, not a cluster.
"""

from __future__ import annotations

# KEYS: counter keys (n of them), reservation key, expiry index.
# ARGV: n, reservation id, expires_at, charges json, meta json or '', then per charge: amount, limit
# (-1: none), counter expiry in ms (0: none).
# Returns {ok, refused index (1-based, 0 if ok), used1, reserved1, used2, reserved2, ...}.
RESERVE = """
local n = tonumber(ARGV[1])
local rkey, rexp = KEYS[n + 1], KEYS[n + 2]
local used, res = {}, {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 'u', 'r')
  used[i] = tonumber(v[1] or '0')
  res[i] = tonumber(v[2] or '0')
end
local function states(ok, idx)
  local out = {ok, idx}
  for i = 1, n do
    out[#out + 1] = used[i]
    out[#out + 1] = res[i]
  end
  return out
end
if redis.call('EXISTS', rkey) == 1 then return states(1, 0) end
for i = 1, n do
  local base = 5 + (i - 1) * 3
  local amount, limit = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  if limit >= 0 and used[i] + res[i] + amount > limit then return states(0, i) end
end
for i = 1, n do
  local base = 5 + (i - 1) * 3
  local amount, exp_ms = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 3])
  res[i] = redis.call('HINCRBY', KEYS[i], 'r', string.format('%d', amount))
  if used[i] == 0 then redis.call('HSETNX', KEYS[i], 'u', '0') end
  if exp_ms > 0 then redis.call('PEXPIREAT', KEYS[i], string.format('%d', exp_ms)) end
end
redis.call('HSET', rkey, 'c', ARGV[4], 'm', ARGV[5])
redis.call('ZADD', rexp, ARGV[3], ARGV[2])
return states(1, 0)
"""

# KEYS: reservation key, expiry index, ledger.
# ARGV: actual amounts json ({unit: amount}), swept ('1' charges reserved amounts), now,
# counter key prefix, reservation id.
# Returns {settled, name1, used1, reserved1, charged1, ...}.
SETTLE = """
local data = redis.call('HMGET', KEYS[1], 'c', 'm')
if not data[1] then return {0} end
local charges = cjson.decode(data[1])
local actual = cjson.decode(ARGV[1])
local swept = ARGV[2] == '1'
local out = {1}
local units, charged = {}, {}
for _, c in ipairs(charges) do
  local name, amount, unit, expires = c[1], c[2], c[3], c[5]
  local a = amount
  if not swept and actual[unit] ~= nil then a = actual[unit] end
  local key = ARGV[4] .. name
  local u = redis.call('HINCRBY', key, 'u', string.format('%d', a))
  local r = redis.call('HINCRBY', key, 'r', string.format('%d', -amount))
  if r < 0 then
    redis.call('HSET', key, 'r', '0')
    r = 0
  end
  if type(expires) == 'number' then
    redis.call('PEXPIREAT', key, string.format('%d', math.floor(expires * 1000)))
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
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[5])
if data[2] and data[2] ~= '' then
  local entry = '{"ts":' .. ARGV[3] .. ',"id":' .. cjson.encode(ARGV[5]) .. ',"meta":' .. data[2]
    .. ',"charged":{' .. table.concat(units, ',') .. '},"swept":' .. (swept and 'true' or 'false') .. '}'
  redis.call('ZADD', KEYS[3], ARGV[3], entry)
end
return out
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
AUDIT_APPEND = """
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if seq ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'hash', ARGV[4])
return 1
"""
