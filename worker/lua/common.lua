-- Shared by every batching script (prepended by worker/scripts.py).
-- KEYS (worker.keys.Keys.group_keys): 1 items, 2 queue, 3 leased, 4 lease, 5 meta, 6 portal,
-- 7 bucket, 8 inflight, 9 due, 10 stats, 11 groups, 12 dead, 13 dead_data, 14 trigger
local PARKED = 1e18  -- "until portal.register": never reached by the sweep

local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Histograms live in the stats hash as '<name>_bucket:<le>' (non-cumulative counts) and
-- '<name>_sum'; worker/metrics.py exposes them to Prometheus. Bounds in worker/metrics.py too.
local BOUNDS = {
  latency_s = {0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800},
  batch_size = {1, 2, 5, 10, 20, 50, 100, 200, 500},
}
local function observe(name, value)
  local le = '+Inf'
  for _, bound in ipairs(BOUNDS[name]) do
    if value <= bound then le = tostring(bound); break end
  end
  redis.call('HINCRBY', KEYS[10], name .. '_bucket:' .. le, 1)
  redis.call('HINCRBYFLOAT', KEYS[10], name .. '_sum', value)
end

local function ms(seconds)
  return math.ceil(seconds * 1000)
end

-- Seconds until the group may flush next (0: now), or -1 when nothing is pending.
local function next_delay(now, batch, window)
  local n = redis.call('ZCARD', KEYS[2])
  if n == 0 then return -1 end
  local wait = 0
  if n < batch then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    wait = math.max(0, tonumber(oldest[2]) + window - now)
  end
  local not_before = tonumber(redis.call('HGET', KEYS[5], 'not_before') or '0') or 0
  local blocked = tonumber(redis.call('HGET', KEYS[6], 'blocked_until') or '0') or 0
  local wake = math.max(not_before, blocked)
  if wake >= PARKED then return PARKED end
  if wake > now then wait = math.max(wait, wake - now) end
  return wait
end

-- Record when the group is next due and, for short waits, claim the one delayed trigger.
-- Returns {send, delay_ms}: send = 1 when the caller must send flush task `task_id` with
-- countdown delay_ms; delay_ms = -1 when nothing is pending, -2 when the portal is parked.
local function finish(gid, now, delay, task_id, max_countdown, grace)
  if delay < 0 then
    if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('ZREM', KEYS[9], gid) end
    return {0, -1}
  end
  if delay >= PARKED then
    redis.call('ZADD', KEYS[9], PARKED, gid)
    return {0, -2}
  end
  if delay > max_countdown then
    redis.call('ZADD', KEYS[9], now + delay, gid)
    return {0, ms(delay)}
  end
  redis.call('ZADD', KEYS[9], now + delay + grace, gid)
  local at = now + delay
  local current = redis.call('GET', KEYS[14])
  if current then
    local current_at = tonumber(string.match(current, ':([%d%.]+)$'))
    if current_at and current_at <= at + 0.001 then return {0, ms(delay)} end
  end
  redis.call('SET', KEYS[14], task_id .. ':' .. string.format('%.3f', at), 'PX', ms(delay + grace))
  return {1, ms(delay)}
end
