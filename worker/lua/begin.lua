-- Start a flush: recover a dead flusher's lease, check the group is ready and the portal open,
-- take a slot of the portal's budget, and lease up to a batch of the oldest items.
-- ARGV: 1 group id, 2 lease token, 3 batch, 4 window s, 5 lease ttl s, 6 default rate,
--       7 default burst, 8 max in flight, 9 own task id, 10 new task id, 11 max countdown s,
--       12 grace s
-- Returns {'busy'} | {'wait', {send, delay_ms}} | {'throttled', {send, delay_ms}} |
--         {'leased', {endpoint, token, version, throttles}, now, failures, ids, elements,
--          oldest}
local now = now_s()
local gid, token, batch, window = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local lease_ttl, max_cd, grace = tonumber(ARGV[5]), tonumber(ARGV[11]), tonumber(ARGV[12])

-- this task's own trigger is spent: let the next one be scheduled
local trigger = redis.call('GET', KEYS[14])
if trigger and string.sub(trigger, 1, #ARGV[9] + 1) == ARGV[9] .. ':' then
  redis.call('DEL', KEYS[14])
end

-- someone is flushing the group: its settle reschedules, the sweep covers its death
local pttl = redis.call('PTTL', KEYS[4])
if pttl > 0 then
  redis.call('ZADD', KEYS[9], now + pttl / 1000 + grace, gid)
  return {'busy'}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  -- the last flusher died holding a lease: its items go back, in their order
  redis.call('ZUNIONSTORE', KEYS[2], 2, KEYS[2], KEYS[3], 'AGGREGATE', 'MIN')
  redis.call('DEL', KEYS[3])
  redis.call('HINCRBY', KEYS[10], 'leases_expired', 1)
end

local portal = redis.call('HMGET', KEYS[6], 'client_endpoint', 'access_token', 'version',
                          'rate_per_s', 'rate_burst', 'throttles')
local delay = next_delay(now, batch, window)
if delay ~= 0 then
  return {'wait', finish(gid, now, delay, ARGV[10], max_cd, grace)}
end
if not portal[1] then
  -- not registered yet: park the group until portal.register brings tokens
  return {'wait', finish(gid, now, PARKED, ARGV[10], max_cd, grace)}
end

redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
if redis.call('ZCARD', KEYS[8]) >= tonumber(ARGV[8]) then
  return {'wait', finish(gid, now, math.min(window, 0.1), ARGV[10], max_cd, grace)}
end
-- a slot of the portal's budget: one reserved for us earlier, or a new one
local slot_at = tonumber(redis.call('HGET', KEYS[5], 'slot_at') or '')
if slot_at and now < slot_at - 0.002 then
  return {'throttled', finish(gid, now, slot_at - now, ARGV[10], max_cd, grace)}
end
redis.call('HDEL', KEYS[5], 'slot_at')
if not slot_at or now > slot_at + grace then  -- none, or one too stale to trust
  local rate = tonumber(portal[4]) or tonumber(ARGV[6])
  local burst = tonumber(portal[5]) or tonumber(ARGV[7])
  local wait, reserved = take_slot(KEYS[7], now, rate, burst, max_cd)
  if wait > 0 then
    if reserved then redis.call('HSET', KEYS[5], 'slot_at', tostring(now + wait)) end
    redis.call('HINCRBY', KEYS[10], 'rate_waits', 1)
    return {'throttled', finish(gid, now, wait, ARGV[10], max_cd, grace)}
  end
end

local popped = redis.call('ZPOPMIN', KEYS[2], batch)
local ids = {}
for i = 1, #popped, 2 do
  redis.call('ZADD', KEYS[3], popped[i + 1], popped[i])
  ids[#ids + 1] = popped[i]
end
redis.call('SET', KEYS[4], token, 'PX', ms(lease_ttl))
redis.call('ZADD', KEYS[8], now + lease_ttl, token)
redis.call('ZADD', KEYS[9], now + lease_ttl + grace, gid)
redis.call('HINCRBY', KEYS[5], 'attempts', 1)
redis.call('HSETNX', KEYS[5], 'first_attempt_at', tostring(now))
redis.call('HSET', KEYS[5], 'last_attempt_at', tostring(now))
local elements = redis.call('HMGET', KEYS[1], unpack(ids))
local failures = redis.call('HGET', KEYS[5], 'failures') or '0'
return {'leased', {portal[1], portal[2], portal[3] or '0', portal[6] or '0'},
        tostring(now), failures, ids, elements, popped[2]}
