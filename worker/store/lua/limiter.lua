-- The portal's fleet-wide leaky bucket, on Redis server time: each call adds 1, the level drains
-- at `rate` per second, and a call that would lift it past `burst` waits.

-- Takes a slot: returns 0 when taken now. Otherwise returns the seconds until one frees up
-- and whether that future slot was reserved (counted in the level now, so each waiter gets a
-- distinct time and nobody stampedes): only waits up to `horizon` seconds are reserved.
local function take_slot(key, now, rate, burst, horizon)
  local b = redis.call('HMGET', key, 'level', 'ts')
  local level = tonumber(b[1]) or 0
  local ts = tonumber(b[2]) or now
  level = math.max(0, level - math.max(0, now - ts) * rate)
  local wait = 0
  if level + 1 > burst then
    wait = (level + 1 - burst) / rate
    if wait > horizon then return wait, false end
  end
  redis.call('HSET', key, 'level', tostring(level + 1), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil((level + 1) / rate * 1000) + 1000)
  return wait, wait > 0
end

-- The portal said QUERY_LIMIT_EXCEEDED: someone else spends its budget too; start from full.
local function drain_budget(key, now, rate, burst)
  redis.call('HSET', key, 'level', tostring(burst), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end

-- A new slot of a portal's budget (begin.lua), at the portal's stored rate and
-- burst (`portal[4]`, `portal[5]` of its HMGET) or the defaults: take_slot's answer, a wait
-- counted in the stats as a rate wait.
local function new_slot(bucket_key, stats_key, portal, now, default_rate, default_burst, horizon)
  local rate = tonumber(portal[4]) or default_rate
  local burst = tonumber(portal[5]) or default_burst
  local wait, reserved = take_slot(bucket_key, now, rate, burst, horizon)
  if wait > 0 then redis.call('HINCRBY', stats_key, 'rate_waits', 1) end
  return wait, reserved
end

-- The budget share: while a portal's batches are not full, the fleet makes at most
-- `share * rate * window` calls to it in any `window` seconds (the rest of its budget is left
-- to the connector's own calls), spaced at least `window / limit` apart, so a confirmation
-- waits at most that long for its portal's share (5 calls in 10 s: 2 s), never most of a
-- window behind a burst. `key` (ZSET lease id -> called at) logs the calls of the last
-- window. Returns the seconds until a call fits in the share (0: now).
local function share_wait(key, now, share, rate, window)
  if share >= 1 then return 0 end
  local limit = math.max(1, math.floor(share * rate * window + 1e-9))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local wait = 0
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last > 0 then wait = tonumber(last[2]) + window / limit - now end
  if redis.call('ZCARD', key) >= limit then
    local nth = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
    wait = math.max(wait, tonumber(nth[2]) + window - now)
  end
  if wait <= 0 then return 0 end
  return math.max(0.001, wait)
end

-- A call made (full or not): logged for the share's window.
local function log_call(key, now, call_id, window)
  redis.call('ZADD', key, now, call_id)
  redis.call('PEXPIRE', key, ms(window) + 1000)
end
