-- list.lua: the live revocations added after a version, or all of them.
--
-- Why Lua: the version and the entries must come from one instant, or a revocation landing in
-- between could be reported under a version the caller then skips past. Read-only.
--
-- KEYS[1]  rv:{revocations}:version     STRING  the store version
-- KEYS[2]  rv:{revocations}:by_version  ZSET    "<expires_at>:<id>", scored by version
-- KEYS[3]  rv:{revocations}:by_expiry   ZSET    id, scored by expires_at
--          (the same keys as revoke.lua; one {revocations} hash tag)
-- ARGV[1]  since_version, decimal
--
-- The full list is returned when since_version is 0 or ahead of the store version (the store
-- was reset since the caller last looked).
--
-- Returns {version, full, live, record_1, version_1, record_2, version_2, ...}:
--   version  the store version (the larger of the version key and the highest entry version)
--   full     1 when the records are every live entry, else 0
--   live     live entries in the store
--   then, in version order, each live record added after since_version and its version.

local now = tonumber(redis.call('TIME')[1])
local since = tonumber(ARGV[1])

local version = tonumber(redis.call('GET', KEYS[1]) or '0')
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if top[2] then
  version = math.max(version, tonumber(top[2]))
end

local full = since == 0 or since > version
local min = '(' .. ARGV[1]
if full then
  min = '-inf'
end

local out = {version, full and 1 or 0, redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')}
local rows = redis.call('ZRANGEBYSCORE', KEYS[2], min, '+inf', 'WITHSCORES')
for i = 1, #rows, 2 do
  local expires_at = tonumber(string.match(rows[i], '^(%d+):'))
  if expires_at and expires_at > now then
    out[#out + 1] = rows[i]
    out[#out + 1] = tonumber(rows[i + 1])
  end
end
return out
