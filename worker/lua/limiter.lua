-- The portal's fleet-wide leaky bucket, on Redis server time: each call adds 1, the level drains
-- at `rate` per second, and a call that would lift it past `burst` waits.

-- Takes a slot: returns 0 when taken, else the seconds until one frees up.
local function take_slot(key, now, rate, burst)
  local b = redis.call('HMGET', key, 'level', 'ts')
  local level = tonumber(b[1]) or 0
  local ts = tonumber(b[2]) or now
  level = math.max(0, level - math.max(0, now - ts) * rate)
  if level + 1 > burst then
    return (level + 1 - burst) / rate
  end
  redis.call('HSET', key, 'level', tostring(level + 1), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil((level + 1) / rate * 1000) + 1000)
  return 0
end

-- The portal said QUERY_LIMIT_EXCEEDED: someone else spends its budget too; start from full.
local function drain_budget(key, now, rate, burst)
  redis.call('HSET', key, 'level', tostring(burst), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
