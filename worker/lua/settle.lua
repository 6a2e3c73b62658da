-- End a flush. Items still ours are those we lease, or, when our lease was lost, those not
-- re-leased by the next flusher.
-- ARGV: 1 group id, 2 lease token, 3 action (delivered|dead_letter|retry|refresh|park),
--       4 delay s (0: none; >= PARKED: until portal.register), 5 portal-wide (1/0),
--       6 drain the budget (1/0), 7 counts as a failure (1/0), 8 error code, 9 description,
--       10 batch, 11 window s, 12 default rate, 13 default burst, 14 new task id,
--       15 max countdown s, 16 grace s, 17 ids sent (JSON array), 18 operating_reset_at seen
-- Returns {settled count, send, delay_ms} (see finish).
local now = now_s()
local gid, action = ARGV[1], ARGV[3]
local mine = redis.call('GET', KEYS[4]) == ARGV[2]
if mine then redis.call('DEL', KEYS[4]) end
redis.call('ZREM', KEYS[8], ARGV[2])
local portal_exists = redis.call('EXISTS', KEYS[6]) == 1
local settled = 0

local function ours(id)
  return mine or not redis.call('ZSCORE', KEYS[3], id)
end

local function dead_letter(id, meta)
  local score = redis.call('ZSCORE', KEYS[3], id) or redis.call('ZSCORE', KEYS[2], id)
  local dead_id = gid .. ':' .. id .. ':' .. string.format('%.6f', now)
  redis.call('HSET', KEYS[13], dead_id, cjson.encode({
    id = dead_id, group = gid, message_id = id,
    element = redis.call('HGET', KEYS[1], id),
    code = ARGV[8], description = ARGV[9],
    attempts = tonumber(meta[1] or '0'), failures = tonumber(meta[2] or '0'),
    first_attempt_at = tonumber(meta[3] or '0'), last_attempt_at = tonumber(meta[4] or '0'),
    enqueued_at = tonumber(score or '0'), dead_at = now,
  }))
  redis.call('ZADD', KEYS[12], now, dead_id)
end

if action == 'delivered' or action == 'dead_letter' then
  local meta = redis.call('HMGET', KEYS[5], 'attempts', 'failures', 'first_attempt_at',
                          'last_attempt_at')
  for _, id in ipairs(cjson.decode(ARGV[17])) do
    if ours(id) and redis.call('HEXISTS', KEYS[1], id) == 1 then
      if action == 'dead_letter' then
        dead_letter(id, meta)
      else
        local score = redis.call('ZSCORE', KEYS[3], id) or redis.call('ZSCORE', KEYS[2], id)
        if score then observe('latency_s', math.max(0, now - tonumber(score))) end
      end
      redis.call('HDEL', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
      redis.call('ZREM', KEYS[3], id)
      settled = settled + 1
    end
  end
  redis.call('HINCRBY', KEYS[10], action == 'delivered' and 'delivered' or 'dead_lettered', settled)
  redis.call('HINCRBY', KEYS[10], 'pending', -settled)
  if action == 'delivered' and settled > 0 then observe('batch_size', settled) end
  redis.call('HDEL', KEYS[5], 'attempts', 'failures', 'first_attempt_at', 'last_attempt_at',
             'not_before')
  if action == 'delivered' and portal_exists then
    redis.call('HDEL', KEYS[6], 'throttles', 'refused_refreshed')
    if ARGV[18] ~= '' then redis.call('HSET', KEYS[6], 'operating_reset_at', ARGV[18]) end
  end
else
  -- retry, refresh, park: the items go back to the queue in their order
  if mine and redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('ZUNIONSTORE', KEYS[2], 2, KEYS[2], KEYS[3], 'AGGREGATE', 'MIN')
    redis.call('DEL', KEYS[3])
  end
  if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[5], 'failures', 1) end
  local delay = tonumber(ARGV[4])
  if delay > 0 then
    local wake = delay >= PARKED and PARKED or now + delay
    if ARGV[5] == '1' then
      if portal_exists then
        local current = tonumber(redis.call('HGET', KEYS[6], 'blocked_until') or '0') or 0
        if wake > current then
          redis.call('HSET', KEYS[6], 'blocked_until', tostring(wake), 'block_reason', ARGV[8])
        end
      end
    else
      redis.call('HSET', KEYS[5], 'not_before', tostring(wake))
    end
  end
  if ARGV[3] == 'retry' and ARGV[6] == '1' and portal_exists then
    redis.call('HINCRBY', KEYS[6], 'throttles', 1)
  end
  if ARGV[6] == '1' then
    local burst = tonumber(redis.call('HGET', KEYS[6], 'rate_burst') or ARGV[13])
    local rate = tonumber(redis.call('HGET', KEYS[6], 'rate_per_s') or ARGV[12])
    drain_budget(KEYS[7], now, rate, burst)
  end
end

local batch, window = tonumber(ARGV[10]), tonumber(ARGV[11])
local r = finish(gid, now, next_delay(now, batch, window), ARGV[14], tonumber(ARGV[15]),
                 tonumber(ARGV[16]))
return {settled, r[1], r[2]}
