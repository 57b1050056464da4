-- lease.lua: leased quotas on the buckets rate_limit.lua keeps (same keys, same state, same
-- math), so a leased token comes from the very bucket ShouldRateLimit charges.
--
--   "lease":  takes up to ARGV[2] requests' worth of tokens from every bucket of the call, all
--             or nothing by the minimum: grant = min(want, min over enforced buckets of
--             floor(whole tokens / weight)), charged to every enforced bucket (and to each
--             shadow-mode bucket that can pay it).
--   "return": gives ARGV[2] requests' worth back: a token bucket refills, capped at its burst; a
--             window bucket's count goes down, not below 0, only in the window its state
--             belongs to. A bucket without state is full: nothing to give back.
--
-- One script call is atomic, so concurrent leases never grant more than a bucket holds.
-- Time: Redis `TIME` (microseconds), as in rate_limit.lua.
--
-- KEYS[i]     bucket key (keys.rs): every key of a call shares the {<domain>} hash tag
-- ARGV[1]     "lease" or "return"
-- ARGV[2]     requests: the most to grant (lease) or how many to give back (return)
-- ARGV        then six arguments per key; for key i, with b = 2 + (i - 1) * 6:
--   ARGV[b+1] algorithm: "t" token bucket, "f" fixed window, "s" sliding window
--   ARGV[b+2] limit: requests per period (>= 1)
--   ARGV[b+3] period in microseconds
--   ARGV[b+4] burst (token bucket capacity)
--   ARGV[b+5] weight: tokens one request costs this bucket (>= 1; > 1 when descriptors repeat)
--   ARGV[b+6] "1" enforced, "0" shadow mode (charged when it can pay, never limiting)
--
-- Lease returns: the grant, then four integers per key, in KEYS order:
--   remaining      whole requests left after the grant
--   reset_ms       until the bucket is full again (token bucket) or the window ends
--   next_token_ms  until the bucket could pay for one more request, rounded up (0: now)
--   empty_ms       as in rate_limit.lua, rounded down (for the local over-limit cache)
-- Return returns one integer per key: whole requests the bucket took back.
--
-- The math mirrors src/bucket.rs and src/bucket/lease.rs; the shared scenario suite runs
-- against both.

local EPS = 1e-6
local ROUNDING_US = 1e-3
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

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

-- Bucket i: its parameters and its state as of now.
local function read(i)
  local b = 2 + (i - 1) * 6
  local e = {
    key = KEYS[i],
    alg = ARGV[b + 1],
    limit = tonumber(ARGV[b + 2]),
    period = tonumber(ARGV[b + 3]),
    burst = tonumber(ARGV[b + 4]),
    weight = math.max(tonumber(ARGV[b + 5]), 1),
    enforce = ARGV[b + 6] == '1',
    stored = false,
  }
  if e.alg == 't' then
    local s = redis.call('HMGET', e.key, 't', 'u')
    e.rate = e.limit / e.period
    e.level = e.burst
    if s[1] and s[2] then
      e.stored = true
      local elapsed = math.max(now - tonumber(s[2]), 0)
      e.level = math.min(e.burst, tonumber(s[1]) + elapsed * e.rate)
    end
  else
    local s = redis.call('HMGET', e.key, 'w', 'c', 'p')
    e.win = math.floor(now / e.period)
    e.cur, e.prev = 0, 0
    if s[1] and s[2] then
      local w = tonumber(s[1])
      if w == e.win then
        e.stored = true
        e.cur = tonumber(s[2])
        e.prev = tonumber(s[3]) or 0
      elseif w + 1 == e.win then
        e.prev = tonumber(s[2])
      end
    end
    if e.alg == 'f' then e.prev = 0 end
    e.f = (now - e.win * e.period) / e.period
    e.until_end = (e.win + 1) * e.period - now
  end
  return e
end

-- The window estimate with `cur` requests in the current window.
local function estimate(e, cur)
  return e.prev * (1 - e.f) + cur
end

-- Whether `need` tokens fit after `taken` were taken.
local function fits(e, taken, need)
  if e.alg == 't' then return e.level - taken + EPS >= need end
  return estimate(e, e.cur + taken) + need <= e.limit + EPS
end

local function whole_tokens(e)
  if e.alg == 't' then return math.max(math.floor(e.level + EPS), 0) end
  return math.max(math.floor(e.limit - estimate(e, e.cur) + EPS), 0)
end

-- Token bucket after `taken` tokens: remaining, reset, next_token, empty; stores if taken.
local function token_after(e, taken)
  local after = e.level - taken
  local need = e.weight
  local reset = ceil_ms((e.burst - after) / e.rate)
  local next_token = 0
  if after + EPS >= need then
    next_token = 0
  elseif need > e.burst + EPS then
    next_token = math.max(ceil_ms((e.burst - after) / e.rate), 1)
  else
    next_token = math.max(ceil_ms((need - after) / e.rate), 1)
  end
  local empty = 0
  if after + EPS < 1 then empty = floor_ms((1 - after) / e.rate) end
  if taken > 0 then
    redis.call('HSET', e.key, 't', after, 'u', now)
    redis.call('PEXPIRE', e.key, reset + 1000)
  end
  return math.max(math.floor(after + EPS), 0), reset, next_token, empty
end

-- Window bucket after `taken` requests: remaining, reset, next_token, empty; stores if taken.
local function window_after(e, taken)
  local cur = e.cur + taken
  local est = estimate(e, cur)
  local need = e.weight
  local next_token, empty = 0, 0
  if e.alg == 'f' then
    if est + need > e.limit + EPS then next_token = math.max(ceil_ms(e.until_end), 1) end
    if est + 1 > e.limit + EPS then empty = floor_ms(e.until_end) end
  else
    if est + need > e.limit + EPS then
      next_token = math.max(ceil_ms(sliding_wait(e.prev, cur, e.f, need, e.limit, e.period)), 1)
    end
    if est + 1 > e.limit + EPS then
      empty = floor_ms(sliding_wait(e.prev, cur, e.f, 1, e.limit, e.period))
    end
  end
  if taken > 0 then
    local keep = e.until_end
    if e.alg == 's' then keep = e.until_end + e.period end
    redis.call('HSET', e.key, 'w', e.win, 'c', cur, 'p', e.prev)
    redis.call('PEXPIRE', e.key, ceil_ms(keep) + 1000)
  end
  return math.max(math.floor(e.limit - est + EPS), 0), ceil_ms(e.until_end), next_token, empty
end

local function lease(want)
  local buckets = {}
  local granted = want
  for i = 1, #KEYS do
    local e = read(i)
    if e.enforce then granted = math.min(granted, math.floor(whole_tokens(e) / e.weight)) end
    buckets[i] = e
  end
  local out = { granted }
  for i = 1, #KEYS do
    local e = buckets[i]
    local charge = granted * e.weight
    local taken = 0
    if charge > 0 and fits(e, 0, charge) then taken = charge end
    local remaining, reset, next_token, empty
    if e.alg == 't' then
      remaining, reset, next_token, empty = token_after(e, taken)
    else
      remaining, reset, next_token, empty = window_after(e, taken)
    end
    local n = #out
    out[n + 1] = remaining
    out[n + 2] = reset
    out[n + 3] = next_token
    out[n + 4] = empty
  end
  return out
end

local function give_back(requests)
  local out = {}
  for i = 1, #KEYS do
    local e = read(i)
    local tokens = requests * e.weight
    local restored = 0
    if e.stored and e.alg == 't' then
      local after = math.min(e.level + tokens, e.burst)
      if after > e.level then
        restored = math.floor((after - e.level + EPS) / e.weight)
        redis.call('HSET', e.key, 't', after, 'u', now)
        redis.call('PEXPIRE', e.key, ceil_ms((e.burst - after) / e.rate) + 1000)
      end
    elseif e.stored and e.cur > 0 then
      local after = math.max(e.cur - tokens, 0)
      restored = math.floor((e.cur - after + EPS) / e.weight)
      redis.call('HSET', e.key, 'c', after)
    end
    out[i] = math.max(restored, 0)
  end
  return out
end

local requests = tonumber(ARGV[2])
if ARGV[1] == 'lease' then return lease(requests) end
if ARGV[1] == 'return' then return give_back(requests) end
return redis.error_reply('lease.lua: unknown operation ' .. tostring(ARGV[1]))
