-- Shared helpers, prepended to every script by worker/store/scripts.py after the generated
-- constants (PARKED, NO_FLUSH_MS, PARKED_MS, BOUNDS, the action names and the LEASE_* kinds,
-- all defined in Python).
-- Helpers take the keys they touch as parameters: a script's keys are named at its top.

local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function ms(seconds)
  return math.ceil(seconds * 1000)
end

-- Histograms live in the stats hash as '<name>_bucket:<le>' (non-cumulative counts) and
-- '<name>_sum'; worker/ops/exporter.py exposes them to Prometheus with the same BOUNDS.
local function observe(stats_key, name, value)
  local le = '+Inf'
  for _, bound in ipairs(BOUNDS[name]) do
    if value <= bound then le = tostring(bound); break end
  end
  redis.call('HINCRBY', stats_key, name .. '_bucket:' .. le, 1)
  redis.call('HINCRBYFLOAT', stats_key, name .. '_sum', value)
end

-- The connector of a group id ('portal:connector:line'), as its parking field names it.
local function connector_park_field(group_id)
  return 'cpark:' .. (string.match(group_id, '^[^:]*:([^:]*):') or '')
end

-- A group's state for a flush: its pending count; `hold`, the seconds it must wait whatever
-- the portal's other groups do (its backoff, its parked connector, the portal's parking; PARKED:
-- until portal.register); whether that hold is the group's own (not the portal's); the seconds
-- until its window ends (0 when full); and when its oldest pending item came.
local function group_state(queue_key, meta_key, portal_key, now, batch, window, group_id)
  local n = redis.call('ZCARD', queue_key)
  if n == 0 then return 0, 0, false, 0, now end
  local oldest = tonumber(redis.call('ZRANGE', queue_key, 0, 0, 'WITHSCORES')[2])
  local window_wait = 0
  if n < batch then window_wait = math.max(0, oldest + window - now) end
  if redis.call('HEXISTS', portal_key, connector_park_field(group_id)) == 1 then
    return n, PARKED, true, window_wait, oldest
  end
  local not_before = tonumber(redis.call('HGET', meta_key, 'not_before') or '0') or 0
  local blocked = tonumber(redis.call('HGET', portal_key, 'blocked_until') or '0') or 0
  local wake, own = not_before, true
  if blocked > not_before then wake, own = blocked, false end
  local hold = 0
  if wake >= PARKED then hold = PARKED elseif wake > now then hold = wake - now end
  return n, hold, own, window_wait, oldest
end

-- Seconds until the group may flush next (0: now), or -1 when nothing is pending.
local function next_delay(queue_key, meta_key, portal_key, now, batch, window, group_id)
  local n, hold, _, window_wait = group_state(queue_key, meta_key, portal_key, now, batch,
                                              window, group_id)
  if n == 0 then return -1 end
  return math.max(hold, window_wait)
end

-- Keep the portal's index of pending groups right for one group: listed by the enqueue time of
-- its oldest pending item while it has one, gone when it has none.
local function index_pending(pending_key, queue_key, group_id)
  local oldest = redis.call('ZRANGE', queue_key, 0, 0, 'WITHSCORES')
  if oldest[2] then
    redis.call('ZADD', pending_key, oldest[2], group_id)
  else
    redis.call('ZREM', pending_key, group_id)
  end
end

-- Add one confirmation to a group's pending items (ingest.lua, ingest_many.lua): 'deduplicated'
-- when it repeats an im.message_id the group delivered within the deduplication window,
-- 'coalesced' when it repeats a pending one, else 'added' (queued at `now`). Counts nothing.
local function add_item(items_key, queue_key, delivered_key, now, dedup_window_s, message_id,
                        element_json)
  if dedup_window_s > 0 then
    local delivered_at = tonumber(redis.call('ZSCORE', delivered_key, message_id) or '')
    if delivered_at and now - delivered_at <= dedup_window_s then return 'deduplicated' end
  end
  if redis.call('HSETNX', items_key, message_id, element_json) == 0 then return 'coalesced' end
  redis.call('ZADD', queue_key, now, message_id)
  return 'added'
end

-- A flusher died holding the group's lease (begin.lua): its items go back to
-- the queue, in their order, and the group's failures grow by one: a lease that expires without
-- a settle is an attempt (the flow dead-letters a group whose flushers keep dying).
local function recover(leased_key, queue_key, meta_key, stats_key)
  if redis.call('EXISTS', leased_key) == 1 then
    redis.call('ZUNIONSTORE', queue_key, 2, queue_key, leased_key, 'AGGREGATE', 'MIN')
    redis.call('DEL', leased_key)
    redis.call('HINCRBY', meta_key, 'failures', 1)
    redis.call('HINCRBY', meta_key, 'expired', 1)
    redis.call('HINCRBY', stats_key, 'leases_expired', 1)
  end
end

-- Move up to `batch_size` of the group's oldest items from its queue to its leased set
-- (begin.lua): their ids, and the ZPOPMIN answer (id, enqueued-at pairs).
local function lease_items(queue_key, leased_key, batch_size)
  local popped = redis.call('ZPOPMIN', queue_key, batch_size)
  local ids = {}
  for i = 1, #popped, 2 do
    redis.call('ZADD', leased_key, popped[i + 1], popped[i])
    ids[#ids + 1] = popped[i]
  end
  return ids, popped
end
