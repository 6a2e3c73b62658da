-- Start a flush: recover a dead flusher's lease, check the group is ready and the portal open,
-- take a slot of the portal's budget, and lease up to a batch of the oldest items.
-- Returns {kind = 'busy'} | {kind = 'wait' | 'throttled', trigger = {send, delay_ms}} |
--         {kind = 'refresh_wait'} |
--         {kind = 'leased' | 'refresh', lease = {endpoint, access_token, token_version,
--          throttles, started_at, failures, ids, elements, oldest_enqueued_at, refused_code}}
-- 'refresh': the portal refused the stored token version and nobody is refreshing it; the
-- items are leased (no slot, not an attempt) for the caller to refresh first, not to call.
local items_key = KEYS[1]
local queue_key = KEYS[2]
local leased_key = KEYS[3]
local lease_key = KEYS[4]
local meta_key = KEYS[5]
local portal_key = KEYS[6]
local bucket_key = KEYS[7]
local inflight_key = KEYS[8]
local due_key = KEYS[9]
local stats_key = KEYS[10]
local trigger_key = KEYS[11]
local refresh_lock_key = KEYS[12]
local refresh_waiters_key = KEYS[13]
local refreshing_key = KEYS[14]
local group_id = ARGV[1]
local lease_id = ARGV[2]
local batch_size = tonumber(ARGV[3])
local window_s = tonumber(ARGV[4])
local lease_ttl_s = tonumber(ARGV[5])
local default_rate_per_s = tonumber(ARGV[6])
local default_rate_burst = tonumber(ARGV[7])
local max_inflight = tonumber(ARGV[8])
local own_task_id = ARGV[9]
local task_id = ARGV[10]
local max_countdown_s = tonumber(ARGV[11])
local grace_s = tonumber(ARGV[12])
-- the sweep looks at a leased group this long after its lease could have expired
local lease_margin_s = tonumber(ARGV[13])

local now = now_s()

local function wait(kind, delay)
  return cjson.encode({kind = kind, trigger = finish(due_key, leased_key, trigger_key, group_id,
                                                     now, delay, task_id, max_countdown_s,
                                                     grace_s)})
end

-- this task's own trigger is spent: let the next one be scheduled
release_trigger(trigger_key, own_task_id)

-- someone is flushing the group: its settle reschedules, the sweep covers its death
local pttl = redis.call('PTTL', lease_key)
if pttl > 0 then
  redis.call('ZADD', due_key, now + pttl / 1000 + lease_margin_s, group_id)
  return cjson.encode({kind = 'busy'})
end
recover(leased_key, queue_key, stats_key)  -- the last flusher died holding a lease

local portal = redis.call('HMGET', portal_key, 'client_endpoint', 'access_token', 'version',
                          'rate_per_s', 'rate_burst', 'throttles', 'refused_version',
                          'refused_code')
local delay = next_delay(queue_key, meta_key, portal_key, now, batch_size, window_s,
                         group_id)
if delay ~= 0 then
  return wait('wait', delay)
end
if not portal[1] then
  -- not registered yet: park the group until portal.register brings tokens
  return wait('wait', PARKED)
end

-- A call with a token that is being replaced, or that the portal already refused, cannot
-- succeed: it must not take a slot of the budget the portal's other callers share.
local lock_pttl = redis.call('PTTL', refresh_lock_key)
-- (a lock that lapsed while its OAuth call is still out: wait for that call's deadline too)
local out = redis.call('ZREVRANGEBYSCORE', refreshing_key, '+inf', now, 'WITHSCORES',
                       'LIMIT', 0, 1)
if out[2] then lock_pttl = math.max(lock_pttl, ms(tonumber(out[2]) - now)) end
if lock_pttl > 0 then
  -- a refresh is under way somewhere in the fleet: its end wakes the waiters (wake.lua); if
  -- the refresher dies, the sweep re-triggers the group once the lock has expired
  redis.call('SADD', refresh_waiters_key, group_id)
  redis.call('PEXPIRE', refresh_waiters_key, lock_pttl + ms(grace_s))  -- the sweep outlives it
  redis.call('ZADD', due_key, now + lock_pttl / 1000 + grace_s, group_id)
  redis.call('HINCRBY', stats_key, 'refresh_waits', 1)
  return cjson.encode({kind = 'refresh_wait'})
end
local token_version = portal[3] or '0'
local kind = 'leased'
if portal[7] == token_version then
  kind = 'refresh'
else
  redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
  if redis.call('ZCARD', inflight_key) >= max_inflight then
    return wait('wait', math.min(window_s, 0.1))
  end
  -- a slot of the portal's budget: one reserved for us earlier, or a new one
  local slot_at = tonumber(redis.call('HGET', meta_key, 'slot_at') or '')
  if slot_at and now < slot_at - 0.002 then
    return wait('throttled', slot_at - now)
  end
  redis.call('HDEL', meta_key, 'slot_at')
  if not slot_at or now > slot_at + grace_s then  -- none, or one too stale to trust
    local slot_wait, reserved = new_slot(bucket_key, stats_key, portal, now, default_rate_per_s,
                                         default_rate_burst, max_countdown_s)
    if slot_wait > 0 then
      if reserved then redis.call('HSET', meta_key, 'slot_at', tostring(now + slot_wait)) end
      return wait('throttled', slot_wait)
    end
  end
end

-- a portal parked as closed (PORTAL_DELETED) whose parking ran out: this flush is its one probe;
-- the others wait for its answer (settle re-parks or reopens the portal)
if kind == 'leased' and redis.call('HGET', portal_key, 'block_reason') == 'PORTAL_DELETED' then
  redis.call('HSET', portal_key, 'blocked_until', tostring(now + lease_ttl_s), 'probe', lease_id)
end

local ids, popped = lease_items(queue_key, leased_key, batch_size)
redis.call('SET', lease_key, lease_id, 'PX', ms(lease_ttl_s))
redis.call('ZADD', due_key, now + lease_ttl_s + lease_margin_s, group_id)
if kind == 'leased' then
  redis.call('ZADD', inflight_key, now + lease_ttl_s, lease_id)
  redis.call('HINCRBY', meta_key, 'attempts', 1)
  redis.call('HSETNX', meta_key, 'first_attempt_at', tostring(now))
  redis.call('HSET', meta_key, 'last_attempt_at', tostring(now))
end
local elements = redis.call('HMGET', items_key, unpack(ids))
return cjson.encode({kind = kind, lease = {
  endpoint = portal[1], access_token = portal[2], token_version = token_version,
  throttles = portal[6] or '0', started_at = tostring(now),
  failures = redis.call('HGET', meta_key, 'failures') or '0',
  ids = ids, elements = elements, oldest_enqueued_at = popped[2],
  refused_code = portal[8] or '',
}})
