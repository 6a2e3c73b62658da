-- Start a packed flush (a portal with packing on). The anchor group (the one whose flush task
-- runs) joins the portal's pack when it is ready; then, if the pack holds ready groups, one slot
-- of the portal's budget sends up to `max_groups` of them in one `batch` request, oldest-ready
-- first, so a busy line cannot keep a sparse one out. Each leased group is settled on its own
-- by settle.lua with the shared `lease_id`.
-- The pack (`pack_key`, ZSET group id -> ready since) holds ready groups waiting for a slot. One
-- slot is reserved per portal (`pack_slot_key`), and only the pack's head (its oldest group) gets
-- a flush task at the slot's time: a hundred waiting groups cost one call and one task. Every
-- waiting group is also due at the slot's time plus the grace, so the sweep covers a lost task.
-- Other groups' keys are built from `group_key_prefix` (they share the portal's hash tag).
-- While a token refresh is under way, or the stored token version was refused, a packed flush
-- defers to begin.lua (kind 'unpacked'): the refresh wait and the refresh-first lease are its.
-- Returns {kind = 'busy' | 'wait' | 'throttled' | 'leased' | 'unpacked',
--          trigger = the anchor's {send, delay_ms} or nil, head = {group_id, send, delay_ms} or nil,
--          lease = {endpoint, access_token, token_version, throttles, started_at},
--          groups = [{group_id, ids, elements, failures, oldest_enqueued_at}]}
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
local refresh_lock_key = KEYS[14]
local refreshing_key = KEYS[15]
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
local head_task_id = ARGV[13]
local max_countdown_s = tonumber(ARGV[14])
local grace_s = tonumber(ARGV[15])

local now = now_s()
local reply = {}

local function group_key(gid, what)
  local connector, line = string.match(gid, '^[^:]+:([^:]+):([^:]+)$')
  return group_key_prefix .. connector .. ':' .. line .. ':' .. what
end

-- the pack's head flushes again after `delay`; the other waiting groups are due then too
local function wake_head(head, waiting, delay)
  local t = finish(due_key, group_key(head, 'leased'), group_key(head, 'trigger'), head, now,
                   delay, head_task_id, max_countdown_s, grace_s)
  reply.head = {group_id = head, send = t.send, delay_ms = t.delay_ms}
  for _, gid in ipairs(waiting) do
    if gid ~= head then redis.call('ZADD', due_key, now + delay + grace_s, gid) end
  end
end

release_trigger(trigger_key, own_task_id)

-- the anchor
local portal = redis.call('HMGET', portal_key, 'client_endpoint', 'access_token', 'version',
                          'rate_per_s', 'rate_burst', 'throttles', 'refused_version')
local anchor_ready = false
local pttl = redis.call('PTTL', lease_key)
if pttl > 0 then
  -- someone is flushing it: its settle reschedules it, the sweep covers its death
  redis.call('ZREM', pack_key, group_id)
  redis.call('ZADD', due_key, now + pttl / 1000 + grace_s, group_id)
  reply.kind = 'busy'
else
  recover(leased_key, queue_key, stats_key)
  local delay = next_delay(queue_key, meta_key, portal_key, now, batch_size, window_s,
                           group_id)
  if delay == 0 and not portal[1] then delay = PARKED end  -- not registered: wait for it
  if delay ~= 0 then
    redis.call('ZREM', pack_key, group_id)
    reply.kind = 'wait'
    reply.trigger = finish(due_key, leased_key, trigger_key, group_id, now, delay, task_id,
                           max_countdown_s, grace_s)
  else
    redis.call('ZADD', pack_key, 'NX', now, group_id)  -- an earlier time is kept
    anchor_ready = true
  end
end

-- a refresh under way (its lock, or an OAuth call still out), or a refused token: begin.lua's
if anchor_ready then
  local refreshing = redis.call('PTTL', refresh_lock_key) > 0
  local out = redis.call('ZREVRANGEBYSCORE', refreshing_key, '+inf', now, 'LIMIT', 0, 1)
  if refreshing or #out > 0 or (portal[7] and portal[7] == (portal[3] or '0')) then
    redis.call('ZREM', pack_key, group_id)
    return cjson.encode({kind = 'unpacked'})
  end
end

-- the pack's ready groups, oldest first (stale entries leave it)
local leasable = {}
local candidates = redis.call('ZRANGEBYSCORE', pack_key, '-inf', now, 'LIMIT', 0, 2 * max_groups)
for _, gid in ipairs(candidates) do
  if #leasable >= max_groups then break end
  if gid == group_id then
    if anchor_ready then leasable[#leasable + 1] = gid end
  elseif redis.call('PTTL', group_key(gid, 'lease')) > 0 then
    redis.call('ZREM', pack_key, gid)  -- flushed by someone else: its settle reschedules it
  else
    local queue, leased = group_key(gid, 'queue'), group_key(gid, 'leased')
    recover(leased, queue, stats_key)
    local meta = group_key(gid, 'meta')
    if next_delay(queue, meta, portal_key, now, batch_size, window_s, gid) ~= 0 then
      redis.call('ZREM', pack_key, gid)  -- not ready any more: its own trigger covers it
    else
      leasable[#leasable + 1] = gid
    end
  end
end
if anchor_ready and #leasable < max_groups then
  local listed = false
  for _, gid in ipairs(leasable) do listed = listed or gid == group_id end
  if not listed then leasable[#leasable + 1] = group_id end
end
if #leasable == 0 or not portal[1] then
  reply.kind = reply.kind or 'wait'
  return cjson.encode(reply)
end
local head = leasable[1]

redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
if redis.call('ZCARD', inflight_key) >= max_inflight then
  wake_head(head, leasable, math.min(window_s, 0.1))
  reply.kind = reply.kind or 'wait'
  return cjson.encode(reply)
end
-- a slot of the portal's budget: the one reserved for the pack, or a new one
local slot_at = tonumber(redis.call('GET', pack_slot_key) or '')
if slot_at and now < slot_at - 0.002 then
  wake_head(head, leasable, slot_at - now)
  reply.kind = reply.kind or 'throttled'
  return cjson.encode(reply)
end
redis.call('DEL', pack_slot_key)
if not slot_at or now > slot_at + grace_s then  -- none, or one too stale to trust
  local slot_wait, reserved = new_slot(bucket_key, stats_key, portal, now, default_rate_per_s,
                                       default_rate_burst, max_countdown_s)
  if slot_wait > 0 then
    if reserved then
      redis.call('SET', pack_slot_key, tostring(now + slot_wait), 'PX', ms(slot_wait + grace_s))
    end
    wake_head(head, leasable, slot_wait)
    reply.kind = reply.kind or 'throttled'
    return cjson.encode(reply)
  end
end

-- a portal parked as closed (PORTAL_DELETED) whose parking ran out: this request is its one
-- probe, with one group; the others wait for its answer (settle re-parks or reopens the portal)
if redis.call('HGET', portal_key, 'block_reason') == 'PORTAL_DELETED' then
  redis.call('HSET', portal_key, 'blocked_until', tostring(now + lease_ttl_s), 'probe', lease_id)
  leasable = {head}
end

-- the slot is ours: lease them all
local groups = {}
for _, gid in ipairs(leasable) do
  local queue, leased, meta = group_key(gid, 'queue'), group_key(gid, 'leased'), group_key(gid, 'meta')
  local ids, popped = lease_items(queue, leased, batch_size)
  redis.call('SET', group_key(gid, 'lease'), lease_id, 'PX', ms(lease_ttl_s))
  redis.call('ZADD', due_key, now + lease_ttl_s + grace_s, gid)
  redis.call('HINCRBY', meta, 'attempts', 1)
  redis.call('HSETNX', meta, 'first_attempt_at', tostring(now))
  redis.call('HSET', meta, 'last_attempt_at', tostring(now))
  redis.call('ZREM', pack_key, gid)
  groups[#groups + 1] = {
    group_id = gid, ids = ids, elements = redis.call('HMGET', group_key(gid, 'items'), unpack(ids)),
    failures = redis.call('HGET', meta, 'failures') or '0', oldest_enqueued_at = popped[2],
  }
end
redis.call('ZADD', inflight_key, now + lease_ttl_s, lease_id)
redis.call('HINCRBY', stats_key, 'packed_calls', 1)
redis.call('HINCRBY', stats_key, 'packed_groups', #groups)
-- more ready than one request takes: the next head waits for the next slot
local rest = redis.call('ZRANGEBYSCORE', pack_key, '-inf', now, 'LIMIT', 0, 1)
if #rest > 0 then
  reply.head = {group_id = rest[1], send = 0, delay_ms = 0}
  local trigger = finish(due_key, group_key(rest[1], 'leased'), group_key(rest[1], 'trigger'),
                         rest[1], now, 1 / (tonumber(portal[4]) or default_rate_per_s),
                         head_task_id, max_countdown_s, grace_s)
  reply.head.send, reply.head.delay_ms = trigger.send, trigger.delay_ms
end
reply.kind = 'leased'
reply.groups = groups
reply.lease = {
  endpoint = portal[1], access_token = portal[2], token_version = portal[3] or '0',
  throttles = portal[6] or '0', started_at = tostring(now),
}
return cjson.encode(reply)
