-- Start a portal's flush, the one way any group is flushed. The candidates are the portal's
-- oldest pending groups and the group the flush task names (their keys follow the portal's in
-- KEYS, GROUP_KEYS for each, in the order of `group_ids_json`). The portal goes when one ready
-- group is full or has waited its window; then every ready group goes along, oldest first, up
-- to `pack_groups` when the portal packs (one `batch` request), else one (a direct call), all
-- under one lease id, for one call and one slot of the portal's budget.
-- A ready group is a pending one with no wait of its own (backoff, parked connector, the
-- portal's parking) that nobody else leases. A group whose wait is its own leaves the pending
-- index until its due time or trigger names it again.
-- Returns {kind = LEASE_* (BUSY, WAIT, THROTTLED, REFRESH_WAIT, LEASED, REFRESH),
--          trigger = {send, delay_ms, group_id} or nil,
--          lease = {endpoint, access_token, token_version, throttles, bad_answers, started_at,
--                   refused_code,
--                   packs}, groups = [{group_id, ids, elements, failures, expired,
--                     oldest_enqueued_at}]} (expired: its leases that ran out unsettled)
-- LEASE_REFRESH: the portal refused the stored token version and nobody is refreshing it; the
-- groups are leased (no slot, not an attempt) for the caller to refresh first, not to call.
local portal_key = KEYS[1]
local bucket_key = KEYS[2]
local share_key = KEYS[3]
local slot_key = KEYS[4]
local inflight_key = KEYS[5]
local pending_key = KEYS[6]
local trigger_key = KEYS[7]
local due_key = KEYS[8]
local stats_key = KEYS[9]
local refresh_lock_key = KEYS[10]
local refresh_waiters_key = KEYS[11]
local refreshing_key = KEYS[12]
local ticks_key = KEYS[13]
local soon_key = KEYS[14]
local group_ids_json = ARGV[1]
local lease_id = ARGV[2]
local own_task_id = ARGV[3]
local task_id = ARGV[4]
local batch_size = tonumber(ARGV[5])
local window_s = tonumber(ARGV[6])
local lease_ttl_s = tonumber(ARGV[7])
local default_rate_per_s = tonumber(ARGV[8])
local default_rate_burst = tonumber(ARGV[9])
local budget_share = tonumber(ARGV[10])
local share_window_s = tonumber(ARGV[11])
local max_inflight = tonumber(ARGV[12])
local default_packing = ARGV[13]
local pack_groups = tonumber(ARGV[14])
local max_countdown_s = tonumber(ARGV[15])
local grace_s = tonumber(ARGV[16])
-- the sweep looks at a leased group this long after its lease could have expired
local lease_margin_s = tonumber(ARGV[17])
local tick_s = tonumber(ARGV[18])
local GROUP_KEYS = {'items_key', 'queue_key', 'leased_key', 'lease_key', 'meta_key'}

local now = now_s()
-- this task's own trigger is spent: let the next one be claimed
release_trigger(trigger_key, own_task_id)

local ids = cjson.decode(group_ids_json)
local candidates = {}
for i, gid in ipairs(ids) do
  local g = {id = gid}
  local base = #KEYS - #GROUP_KEYS * (#ids - i + 1)
  for j, name in ipairs(GROUP_KEYS) do g[name] = KEYS[base + j] end
  candidates[i] = g
  -- a tick's wait for it ended: this flush is the one it waited for (take_tick.lua)
  local wanted_at = tonumber(redis.call('ZSCORE', soon_key, gid) or '')
  if wanted_at and wanted_at <= now + 0.001 then redis.call('ZREM', soon_key, gid) end
end

local portal = redis.call('HMGET', portal_key, 'client_endpoint', 'access_token', 'version',
                          'rate_per_s', 'rate_burst', 'throttles', 'refused_version',
                          'refused_code', 'packing', 'packing_off_at', 'block_reason',
                          'bad_answers')
local packs = (portal[9] or default_packing) == 'batch' and not portal[10]

-- each candidate: leased by another flusher, empty, waiting on its own, or ready
local ready, waiting, busy = {}, {}, false
for _, g in ipairs(candidates) do
  local pttl = redis.call('PTTL', g.lease_key)
  if pttl > 0 then
    -- someone is flushing it: its settle reschedules it, the sweep covers its death
    busy = true
    redis.call('ZADD', due_key, now + pttl / 1000 + lease_margin_s, g.id)
  else
    -- the last flusher died holding a lease: counted as an attempt
    recover(g.leased_key, g.queue_key, g.meta_key, stats_key)
    local n, hold, own, window_wait, oldest = group_state(g.queue_key, g.meta_key, portal_key,
                                                          now, batch_size, window_s, g.id)
    g.n, g.window_wait, g.oldest, g.wait = n, window_wait, oldest, math.max(hold, window_wait)
    if n == 0 then
      redis.call('ZREM', pending_key, g.id)
      redis.call('ZREM', due_key, g.id)
    elseif hold > 0 then
      if own then  -- out of the index until its due time or trigger names it again
        redis.call('ZREM', pending_key, g.id)
      else  -- the portal's wait: it goes with the others when that ends
        index_pending(pending_key, g.queue_key, g.id)
      end
      waiting[#waiting + 1] = g
    else
      index_pending(pending_key, g.queue_key, g.id)
      ready[#ready + 1] = g
    end
  end
end
table.sort(ready, function(a, b) return a.oldest < b.oldest end)

-- Every group this flush does not lease: due for the sweep no earlier than `at_least` from
-- now, and the portal's trigger claimed for the earliest (unless `no_claim`).
local function schedule(groups, at_least, no_claim)
  local first
  for _, g in ipairs(groups) do
    g.wait = math.max(g.wait, at_least)
    due_at(due_key, g.id, now, g.wait, max_countdown_s, grace_s)
    if not first or g.wait < first.wait then first = g end
  end
  if first and not no_claim then
    return claim(trigger_key, task_id, first.id, now, first.wait, max_countdown_s, grace_s,
                 {ticks_key = ticks_key, soon_key = soon_key, s = tick_s})
  end
  return nil
end

-- The first pending group this flush did not see (listed after its candidates were read), or
-- nil: it needs the portal's trigger too.
local function unseen()
  local listed = {}
  for _, gid in ipairs(ids) do listed[gid] = true end
  for _, gid in ipairs(redis.call('ZRANGE', pending_key, 0, #ids)) do
    if not listed[gid] then
      local oldest = tonumber(redis.call('ZSCORE', pending_key, gid))
      return {id = gid, wait = math.max(0, oldest + window_s - now)}
    end
  end
  return nil
end

local function wait(kind, at_least)
  local all = {unseen()}
  for _, g in ipairs(ready) do all[#all + 1] = g end
  for _, g in ipairs(waiting) do all[#all + 1] = g end
  return cjson.encode({kind = kind, trigger = schedule(all, at_least)})
end

if #ready == 0 then
  return wait(busy and LEASE_BUSY or LEASE_WAIT, 0)
end
-- not one ready group full or old enough: the portal waits for the first window's end
local soonest = ready[1].window_wait
for _, g in ipairs(ready) do soonest = math.min(soonest, g.window_wait) end
if soonest > 0 then return wait(LEASE_WAIT, soonest) end
if not portal[1] then
  return wait(LEASE_WAIT, PARKED)  -- not registered yet: parked until portal.register
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
  -- the refresher dies, the sweep re-triggers them once the lock has expired
  for _, g in ipairs(ready) do
    redis.call('SADD', refresh_waiters_key, g.id)
    redis.call('ZADD', due_key, now + lock_pttl / 1000 + grace_s, g.id)
  end
  redis.call('PEXPIRE', refresh_waiters_key, lock_pttl + ms(grace_s))  -- the sweep outlives it
  redis.call('HINCRBY', stats_key, 'refresh_waits', 1)
  schedule(waiting, 0, true)
  return cjson.encode({kind = LEASE_REFRESH_WAIT})
end

local token_version = portal[3] or '0'
local kind = LEASE_LEASED
if portal[7] == token_version then
  kind = LEASE_REFRESH
else
  redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
  -- while the portal's rule-breaking answers are fresh (until a success), one call in flight:
  -- a portal that answers slowly holds one worker slot at most
  local cap = (tonumber(portal[12]) or 0) > 0 and 1 or max_inflight
  if redis.call('ZCARD', inflight_key) >= cap then
    return wait(LEASE_WAIT, math.min(window_s, 0.1))
  end
  local rate = tonumber(portal[4]) or default_rate_per_s
  local full = false
  for _, g in ipairs(ready) do full = full or g.n >= batch_size end
  -- a slot of the portal's budget: one reserved for it earlier, or a new one
  local slot_at = tonumber(redis.call('GET', slot_key) or '')
  if slot_at and now < slot_at - 0.002 then
    return wait(LEASE_THROTTLED, slot_at - now)
  end
  redis.call('DEL', slot_key)
  if not slot_at or now > slot_at + grace_s then  -- none, or one too stale to trust
    if not full then  -- partial batches spend only the portal's budget share
      local share = share_wait(share_key, now, budget_share, rate, share_window_s)
      if share > 0 then
        redis.call('HINCRBY', stats_key, 'share_waits', 1)
        return wait(LEASE_THROTTLED, share)
      end
    end
    local slot_wait, reserved = new_slot(bucket_key, stats_key, portal, now, default_rate_per_s,
                                         default_rate_burst, max_countdown_s)
    if slot_wait > 0 then
      if reserved then
        redis.call('SET', slot_key, tostring(now + slot_wait), 'PX', ms(slot_wait + grace_s))
      end
      return wait(LEASE_THROTTLED, slot_wait)
    end
  end
  -- the share counts partial calls: the tail of a busy spell (full batches at the permitted
  -- rate) is not held back for the calls that spell made
  if not full then log_call(share_key, now, lease_id, share_window_s) end
end

-- as many as one call takes; a closed portal (PORTAL_DELETED) whose parking ran out gets one
-- probe call with one group, the others wait for its answer (settle re-parks or reopens it)
local take = packs and pack_groups or 1
if kind == LEASE_LEASED and portal[11] == 'PORTAL_DELETED' then
  redis.call('HSET', portal_key, 'blocked_until', tostring(now + lease_ttl_s), 'probe', lease_id)
  take = 1
end
local groups, rest = {}, {}
for i, g in ipairs(ready) do
  if i > take then
    g.wait = 0  -- the next flush at once: it takes the next slot, or reserves it
    rest[#rest + 1] = g
  else
    local leased_ids, popped = lease_items(g.queue_key, g.leased_key, batch_size)
    redis.call('SET', g.lease_key, lease_id, 'PX', ms(lease_ttl_s))
    redis.call('ZADD', due_key, now + lease_ttl_s + lease_margin_s, g.id)
    if kind == LEASE_LEASED then
      redis.call('HINCRBY', g.meta_key, 'attempts', 1)
      redis.call('HSETNX', g.meta_key, 'first_attempt_at', tostring(now))
      redis.call('HSET', g.meta_key, 'last_attempt_at', tostring(now))
    end
    index_pending(pending_key, g.queue_key, g.id)
    groups[#groups + 1] = {
      group_id = g.id, ids = leased_ids,
      elements = redis.call('HMGET', g.items_key, unpack(leased_ids)),
      failures = redis.call('HGET', g.meta_key, 'failures') or '0',
      expired = redis.call('HGET', g.meta_key, 'expired') or '0',
      oldest_enqueued_at = popped[2],
    }
  end
end
if kind == LEASE_LEASED then
  redis.call('ZADD', inflight_key, now + lease_ttl_s, lease_id)
  if #groups > 1 then
    redis.call('HINCRBY', stats_key, 'packed_calls', 1)
    redis.call('HINCRBY', stats_key, 'packed_groups', #groups)
  end
end
for _, g in ipairs(waiting) do rest[#rest + 1] = g end
rest[#rest + 1] = unseen()
return cjson.encode({
  kind = kind, trigger = schedule(rest, 0), groups = groups,
  lease = {
    endpoint = portal[1], access_token = portal[2], token_version = token_version,
    throttles = portal[6] or '0', started_at = tostring(now), refused_code = portal[8] or '',
    packs = packs, bad_answers = portal[12] or '0',
  },
})
