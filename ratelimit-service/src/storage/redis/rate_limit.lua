-- rate_limit.lua: for each of a batch of ShouldRateLimit decisions, checks every bucket of the
-- decision, then charges all of them or none. Decisions run one after the other, each atomic
-- on its own buckets (a later decision sees what an earlier one charged); the service sends
-- the decisions that queued while its previous call was in flight as one batch (mod.rs).
--
-- Why Lua: the decision must be atomic across all buckets of a call (a request rejected by one
-- descriptor must consume nothing from the others) and across gateways sharing Redis. One
-- script is one round trip and runs without interleaving; MULTI/WATCH would need two round
-- trips and retries under contention.
--
-- Time: the script reads Redis `TIME` (microseconds), so gateway clocks never matter. All
-- durations returned are relative to that instant.
--
-- KEYS[i]     bucket key, built by keys.rs: rl:{<domain>}:<limit-tag>:<entries>. All keys of a
--             call share the {<domain>} hash tag, so the call runs on one Redis Cluster slot.
--             The decisions' keys, one decision after the other (a key may repeat).
-- ARGV[1]     D, the number of decisions; ARGV[2 .. D+1] the number of keys of each.
-- ARGV        then six arguments per key; for key i, with b = 1 + D + (i - 1) * 6:
--   ARGV[b+1] algorithm: "t" token bucket, "f" fixed window, "s" sliding window
--   ARGV[b+2] limit: requests per period (>= 1; zero limits never reach Redis)
--   ARGV[b+3] period in microseconds (unit * unit_multiplier)
--   ARGV[b+4] burst: token bucket capacity (ignored by the window algorithms)
--   ARGV[b+5] hits to charge; 0 = only check that one more request would fit
--   ARGV[b+6] "1" if the bucket is enforced, "0" for shadow mode (charged when it passes,
--             never blocks the other buckets)
--
-- State (a hash per key; PEXPIRE'd so idle keys vanish once they equal a fresh bucket):
--   token bucket:   t = tokens (float), u = last update (us)
--   window buckets: w = window index (now / period), c = count in window w,
--                   p = count in window w - 1 (sliding window only)
--
-- Returns a flat array, five integers per key, in KEYS order (decision after decision):
--   allowed    1 if this bucket alone admits the hits, else 0
--   remaining  whole requests left after this call
--   reset_ms   until the bucket is full again (token bucket) or the window ends
--   retry_ms   until these hits could be admitted (0 when allowed)
--   empty_ms   until at least one request could be admitted, rounded down (0 if one can now);
--              the service caches "over limit" locally for this long
--
-- The math mirrors src/bucket.rs; the shared scenario suite runs against both.

local EPS = 1e-6
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- Rounding slack: refill arithmetic leaves 99999.99999 us where 100 ms is meant.
local ROUNDING_US = 1e-3

local function ceil_ms(us)
  if us <= ROUNDING_US then return 0 end
  return math.ceil((us - ROUNDING_US) / 1000)
end

local function floor_ms(us)
  if us <= 0 then return 0 end
  return math.floor((us + ROUNDING_US) / 1000)
end

-- Microseconds until prev * (1 - f) + cur + need <= limit, assuming no new hits.
local function sliding_wait(prev, cur, f, need, limit, period)
  local budget = limit - need
  if cur <= budget + EPS then
    if prev * (1 - f) + cur <= budget + EPS or prev <= 0 then return 0 end
    local at = 1 - (budget - cur) / prev
    return math.max((at - f) * period, 0)
  end
  if budget < 0 then return (1 - f) * period + period end
  local at = 1 - budget / cur
  return (1 - f) * period + at * period
end

-- One decision: keys first .. first+count-1, their arguments from ARGV[base + 1]; appends
-- five integers per key to `out`.
local function decide(first, count, base, out)
  -- Phase 1: read and evaluate every bucket.
  local buckets = {}
  local all_pass = true
  for i = first, first + count - 1 do
    local b = base + (i - 1) * 6
    local e = {
      alg = ARGV[b + 1],
      limit = tonumber(ARGV[b + 2]),
      period = tonumber(ARGV[b + 3]),
      burst = tonumber(ARGV[b + 4]),
      hits = tonumber(ARGV[b + 5]),
      enforce = ARGV[b + 6] == '1',
    }
    e.need = math.max(e.hits, 1)
    if e.alg == 't' then
      local s = redis.call('HMGET', KEYS[i], 't', 'u')
      e.rate = e.limit / e.period
      e.level = e.burst
      if s[1] and s[2] then
        local elapsed = math.max(now - tonumber(s[2]), 0)
        e.level = math.min(e.burst, tonumber(s[1]) + elapsed * e.rate)
      end
      e.allowed = e.level + EPS >= e.need
    else
      local s = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
      e.win = math.floor(now / e.period)
      e.cur, e.prev = 0, 0
      if s[1] and s[2] then
        local w = tonumber(s[1])
        if w == e.win then
          e.cur = tonumber(s[2])
          e.prev = tonumber(s[3]) or 0
        elseif w + 1 == e.win then
          e.prev = tonumber(s[2])
        end
      end
      if e.alg == 'f' then e.prev = 0 end
      e.f = (now - e.win * e.period) / e.period
      e.allowed = e.prev * (1 - e.f) + e.cur + e.need <= e.limit + EPS
    end
    if e.enforce and not e.allowed then all_pass = false end
    buckets[i] = e
  end

  -- Phase 2: charge all buckets (or none) and report.
  for i = first, first + count - 1 do
    local e = buckets[i]
    local take = all_pass and e.allowed and e.hits > 0
    local remaining, reset, retry, empty
    if e.alg == 't' then
      local after = e.level
      if take then after = after - e.hits end
      reset = ceil_ms((e.burst - after) / e.rate)
      if e.allowed then
        retry = 0
      elseif e.need > e.burst + EPS then
        retry = math.max(ceil_ms((e.burst - e.level) / e.rate), 1)
      else
        retry = math.max(ceil_ms((e.need - e.level) / e.rate), 1)
      end
      empty = 0
      if after + EPS < 1 then empty = floor_ms((1 - after) / e.rate) end
      remaining = math.floor(after + EPS)
      if take then
        redis.call('HSET', KEYS[i], 't', after, 'u', now)
        redis.call('PEXPIRE', KEYS[i], reset + 1000)
      end
    else
      local cur = e.cur
      if take then cur = cur + e.hits end
      local estimate = e.prev * (1 - e.f) + cur
      local until_end = (e.win + 1) * e.period - now
      reset = ceil_ms(until_end)
      remaining = math.floor(e.limit - estimate + EPS)
      empty = 0
      if e.alg == 'f' then
        retry = 0
        if not e.allowed then retry = math.max(ceil_ms(until_end), 1) end
        if estimate + 1 > e.limit + EPS then empty = floor_ms(until_end) end
        if take then
          redis.call('HSET', KEYS[i], 'w', e.win, 'c', cur, 'p', 0)
          redis.call('PEXPIRE', KEYS[i], ceil_ms(until_end) + 1000)
        end
      else
        retry = 0
        if not e.allowed then
          retry = math.max(ceil_ms(sliding_wait(e.prev, e.cur, e.f, e.need, e.limit, e.period)), 1)
        end
        if estimate + 1 > e.limit + EPS then
          empty = floor_ms(sliding_wait(e.prev, cur, e.f, 1, e.limit, e.period))
        end
        if take then
          redis.call('HSET', KEYS[i], 'w', e.win, 'c', cur, 'p', e.prev)
          redis.call('PEXPIRE', KEYS[i], ceil_ms(until_end + e.period) + 1000)
        end
      end
    end
    local n = #out
    out[n + 1] = e.allowed and 1 or 0
    out[n + 2] = math.max(remaining, 0)
    out[n + 3] = reset
    out[n + 4] = retry
    out[n + 5] = empty
  end
end

local decisions = tonumber(ARGV[1])
local base = 1 + decisions
local out = {}
local first = 1
for d = 1, decisions do
  local count = tonumber(ARGV[1 + d])
  decide(first, count, base, out)
  first = first + count
end
return out
