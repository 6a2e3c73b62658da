-- Start a packed flush (a portal with packing on): the anchor group (the one whose flush task
-- runs) joins the portal's pack of ready groups; with a slot of the portal's budget, up to
-- `max_groups` ready groups of the pack are leased at once for one `batch` request, oldest-ready
-- first, so a busy line cannot keep a sparse one out. Each leased group is then settled on its
-- own by settle.lua with the shared `lease_id`.
-- The pack (`pack_key`, a ZSET group id -> ready since) holds groups that are ready and wait for
-- a slot; each of them has its own trigger at the slot's time, so whichever runs first takes the
-- slot and the others find themselves leased. One slot is reserved per portal (`pack_slot_key`),
-- not one per group: a hundred waiting groups cost one call, not a hundred.
-- Other groups' keys are built from `group_key_prefix` (they share the portal's hash tag).
-- Returns {kind = 'busy'} | {kind = 'wait' | 'throttled', trigger = {send, delay_ms}} |
--         {kind = 'leased', lease = {endpoint, access_token, token_version, throttles,
--          started_at}, groups = [{group_id, ids, elements, failures, oldest_enqueued_at}]}
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
local pack_key = KEYS[12]
local pack_slot_key = KEYS[13]
local group_id = ARGV[1]
local lease_id = ARGV[2]
local group_key_prefix = ARGV[3]
local batch_size = tonumber(ARGV[4])
local window_s = tonumber(ARGV[5])
local lease_ttl_s = tonumber(ARGV[6])
local default_rate_per_s = tonumber(ARGV[7])
local default_rate_burst = tonumber(ARGV[8])
local max_inflight = tonumber(ARGV[9])
local max_groups = tonumber(ARGV[10])
local own_task_id = ARGV[11]
local task_id = ARGV[12]
local max_countdown_s = tonumber(ARGV[13])
local grace_s = tonumber(ARGV[14])

local now = now_s()

local function wait(kind, delay)
  return cjson.encode({kind = kind, trigger = finish(due_key, leased_key, trigger_key, group_id,
                                                     now, delay, task_id, max_countdown_s,
                                                     grace_s)})
end

local function group_key(gid, what)
  local connector, line = string.match(gid, '^[^:]+:([^:]+):([^:]+)$')
  return group_key_prefix .. connector .. ':' .. line .. ':' .. what
end

-- a flusher died holding the group's lease: its items go back, in their order
local function recover(leased, queue)
  if redis.call('EXISTS', leased) == 1 then
    redis.call('ZUNIONSTORE', queue, 2, queue, leased, 'AGGREGATE', 'MIN')
    redis.call('DEL', leased)
    redis.call('HINCRBY', stats_key, 'leases_expired', 1)
  end
end

release_trigger(trigger_key, own_task_id)

local pttl = redis.call('PTTL', lease_key)
if pttl > 0 then
  redis.call('ZREM', pack_key, group_id)
  redis.call('ZADD', due_key, now + pttl / 1000 + grace_s, group_id)
  return cjson.encode({kind = 'busy'})
end
recover(leased_key, queue_key)

local portal = redis.call('HMGET', portal_key, 'client_endpoint', 'access_token', 'version',
                          'rate_per_s', 'rate_burst', 'throttles')
local delay = next_delay(queue_key, meta_key, portal_key, now, batch_size, window_s)
if delay ~= 0 then
  redis.call('ZREM', pack_key, group_id)
  return wait('wait', delay)
end
if not portal[1] then
  redis.call('ZREM', pack_key, group_id)
  return wait('wait', PARKED)
end
-- ready: in the pack from now on (an earlier time is kept: oldest-ready first)
redis.call('ZADD', pack_key, 'NX', now, group_id)

redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
if redis.call('ZCARD', inflight_key) >= max_inflight then
  return wait('wait', math.min(window_s, 0.1))
end
local slot_at = tonumber(redis.call('GET', pack_slot_key) or '')
if slot_at and now < slot_at - 0.002 then
  return wait('throttled', slot_at - now)
end
redis.call('DEL', pack_slot_key)
if not slot_at or now > slot_at + grace_s then  -- none, or one too stale to trust
  local rate = tonumber(portal[4]) or default_rate_per_s
  local burst = tonumber(portal[5]) or default_rate_burst
  local slot_wait, reserved = take_slot(bucket_key, now, rate, burst, max_countdown_s)
  if slot_wait > 0 then
    if reserved then
      redis.call('SET', pack_slot_key, tostring(now + slot_wait), 'PX',
                 ms(slot_wait + grace_s))
    end
    redis.call('HINCRBY', stats_key, 'rate_waits', 1)
    return wait('throttled', slot_wait)
  end
end

-- the slot is ours: lease the oldest ready groups of the pack
local groups = {}
local function lease(gid, queue, leased, lease_k, meta, items)
  local popped = redis.call('ZPOPMIN', queue, batch_size)
  local ids = {}
  for i = 1, #popped, 2 do
    redis.call('ZADD', leased, popped[i + 1], popped[i])
    ids[#ids + 1] = popped[i]
  end
  redis.call('SET', lease_k, lease_id, 'PX', ms(lease_ttl_s))
  redis.call('ZADD', due_key, now + lease_ttl_s + grace_s, gid)
  redis.call('HINCRBY', meta, 'attempts', 1)
  redis.call('HSETNX', meta, 'first_attempt_at', tostring(now))
  redis.call('HSET', meta, 'last_attempt_at', tostring(now))
  redis.call('ZREM', pack_key, gid)
  groups[#groups + 1] = {
    group_id = gid, ids = ids, elements = redis.call('HMGET', items, unpack(ids)),
    failures = redis.call('HGET', meta, 'failures') or '0', oldest_enqueued_at = popped[2],
  }
end

local anchor_leased = false
local candidates = redis.call('ZRANGEBYSCORE', pack_key, '-inf', now, 'LIMIT', 0, 2 * max_groups)
for _, gid in ipairs(candidates) do
  if #groups >= max_groups then break end
  if gid == group_id then
    lease(gid, queue_key, leased_key, lease_key, meta_key, items_key)
    anchor_leased = true
  elseif redis.call('PTTL', group_key(gid, 'lease')) > 0 then
    redis.call('ZREM', pack_key, gid)  -- flushed by someone else: its settle reschedules it
  else
    local queue, leased = group_key(gid, 'queue'), group_key(gid, 'leased')
    local meta = group_key(gid, 'meta')
    recover(leased, queue)
    if next_delay(queue, meta, portal_key, now, batch_size, window_s) ~= 0 then
      redis.call('ZREM', pack_key, gid)  -- not ready any more: its own trigger covers it
    else
      lease(gid, queue, leased, group_key(gid, 'lease'), meta, group_key(gid, 'items'))
    end
  end
end
if not anchor_leased and #groups < max_groups then
  lease(group_id, queue_key, leased_key, lease_key, meta_key, items_key)
  anchor_leased = true
end
redis.call('ZADD', inflight_key, now + lease_ttl_s, lease_id)
redis.call('HINCRBY', stats_key, 'packed_calls', 1)
redis.call('HINCRBY', stats_key, 'packed_groups', #groups)
local reply = {kind = 'leased', groups = groups, lease = {
  endpoint = portal[1], access_token = portal[2], token_version = portal[3] or '0',
  throttles = portal[6] or '0', started_at = tostring(now),
}}
if not anchor_leased then
  -- the pack was full without it: try again at the next slot
  reply.trigger = finish(due_key, leased_key, trigger_key, group_id, now,
                         1 / (tonumber(portal[4]) or default_rate_per_s), task_id,
                         max_countdown_s, grace_s)
end
return cjson.encode(reply)
