-- revoke.lua: records one revocation and prunes expired ones, atomically.
--
-- Why Lua: the version bump and the entry must land together, or a reader could see version V
-- without the entry V names (and then ask for "since V" and never get it). One script is one
-- round trip and runs without interleaving; MULTI/WATCH would need retries under contention.
--
-- Time: Redis `TIME`, so service clocks do not matter for expiry.
--
-- KEYS[1]  rv:{revocations}:version     STRING  the store version
-- KEYS[2]  rv:{revocations}:entries     HASH    id -> record
-- KEYS[3]  rv:{revocations}:by_version  ZSET    record, scored by the version that last changed it
-- KEYS[4]  rv:{revocations}:by_expiry   ZSET    id, scored by expires_at
--          All four share the {revocations} hash tag: one Redis Cluster slot. Built by keys.rs.
-- ARGV[1]  id: "<byte length of issuer>:<issuer><jti>"
-- ARGV[2]  expires_at, Unix seconds, decimal (validated by the service: after now, < 10 years)
-- ARGV[3]  maximum number of live entries
--
-- A record is "<expires_at>:<id>", so a list reads every field from one sorted set.
--
-- Versions: max(previous + 1, now in microseconds). Seeding from the clock means a store that
-- lost its data (FLUSHALL, a restart without persistence) never reuses a version a caller has
-- already seen. The previous version is the larger of the version key and the highest entry
-- version, in case the version key alone was lost (eviction).
--
-- Returns {status, version, live}:
--   status   0 recorded; 1 already revoked until at least ARGV[2] (nothing changed);
--            2 ARGV[2] is not after Redis time (nothing changed);
--            3 full: a new entry would exceed ARGV[3] live entries (nothing changed)
--   version  the store version after the call
--   live     live entries after the call

-- Expired entries removed per call: pruning is O(removed), and a burst of expiries must not
-- stall Redis. Lists skip expired entries anyway; later calls remove the rest.
local PRUNE_PER_CALL = 10000

local time = redis.call('TIME')
local now = tonumber(time[1])
local now_us = now * 1000000 + tonumber(time[2])
local id = ARGV[1]
local expires_at = tonumber(ARGV[2])
local max_live = tonumber(ARGV[3])

local function record_expiry(record)
  return tonumber(string.match(record, '^(%d+):'))
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, PRUNE_PER_CALL)
for _, old_id in ipairs(expired) do
  local old_record = redis.call('HGET', KEYS[2], old_id)
  if old_record then
    redis.call('ZREM', KEYS[3], old_record)
    redis.call('HDEL', KEYS[2], old_id)
  end
  redis.call('ZREM', KEYS[4], old_id)
end

local version = tonumber(redis.call('GET', KEYS[1]) or '0')
local top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if top[2] then
  version = math.max(version, tonumber(top[2]))
end
local live = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')

if expires_at <= now then
  return {2, version, live}
end

local old_record = redis.call('HGET', KEYS[2], id)
local old_live = false
if old_record then
  local old_expiry = record_expiry(old_record)
  if old_expiry >= expires_at then
    return {1, version, live}
  end
  old_live = old_expiry > now
end
if not old_live and live >= max_live then
  return {3, version, live}
end

version = math.max(version + 1, now_us)
local version_text = string.format('%.0f', version)
local record = ARGV[2] .. ':' .. id
if old_record then
  redis.call('ZREM', KEYS[3], old_record)
end
redis.call('SET', KEYS[1], version_text)
redis.call('HSET', KEYS[2], id, record)
redis.call('ZADD', KEYS[3], version_text, record)
redis.call('ZADD', KEYS[4], ARGV[2], id)
if not old_live then
  live = live + 1
end

-- The entry keys vanish by themselves once their last entry has expired (the version key
-- stays, so versions keep increasing).
local last = redis.call('ZREVRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local vanish_at = string.format('%.0f', tonumber(last[2]) + 1)
for i = 2, 4 do
  redis.call('EXPIREAT', KEYS[i], vanish_at)
end

return {0, version, live}
