-- End a flush. Items still ours are those we lease, or, when our lease was lost, those not
-- re-leased by the next flusher. `action` is one of the action names (DELIVERED, DEAD_LETTER,
-- RETRY, REFRESH, PARK, PARK_CONNECTOR); `delay_s` 0: none, >= PARKED: until portal.register.
-- PARK with `portal_wide` parks the portal (reason `code`); PARK_CONNECTOR parks the group's
-- connector of the portal. The answer of a closed portal's probe re-parks or reopens it.
-- Returns {settled = count, trigger = {send, delay_ms, group_id}} (see finish).
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
local dead_key = KEYS[11]
local dead_data_key = KEYS[12]
local trigger_key = KEYS[13]
local groups_key = KEYS[14]
local delivered_key = KEYS[15]
local pending_key = KEYS[16]
local ticks_key = KEYS[17]
local soon_key = KEYS[18]
local group_id = ARGV[1]
local lease_id = ARGV[2]
local action = ARGV[3]
local delay_s = tonumber(ARGV[4])
local portal_wide = ARGV[5] == '1'
local drain = ARGV[6] == '1'
local counts_failure = ARGV[7] == '1'
local code = ARGV[8]
local description = ARGV[9]
local batch_size = tonumber(ARGV[10])
local window_s = tonumber(ARGV[11])
local default_rate_per_s = tonumber(ARGV[12])
local default_rate_burst = tonumber(ARGV[13])
local task_id = ARGV[14]
local max_countdown_s = tonumber(ARGV[15])
local grace_s = tonumber(ARGV[16])
local sent_ids_json = ARGV[17]
local operating_reset_at = ARGV[18]
local dedup_window_s = tonumber(ARGV[19])
-- a flush deferred because this worker lacks the key of the portal's tokens: the portal's own
-- count (its backoff), never a failure
local counts_key_wait = ARGV[20] == '1'
-- '1': the answer broke the rules, counted on the portal once per request (its groups share the
-- lease id); a delivered batch resets the count
local bad_answer = ARGV[21] == '1'
local tick_s = tonumber(ARGV[22])
-- '1': the group's own direct call succeeded, counted here (one round trip fewer per call)
local counts_call = ARGV[23] == '1'

local now = now_s()
if counts_call then redis.call('HINCRBY', stats_key, 'calls:done', 1) end
local mine = redis.call('GET', lease_key) == lease_id
if mine then redis.call('DEL', lease_key) end
redis.call('ZREM', inflight_key, lease_id)
local portal_exists = redis.call('EXISTS', portal_key) == 1
local settled = 0
-- this flush was a closed portal's one probe: its answer decides for the whole portal
local probe = portal_exists and redis.call('HGET', portal_key, 'probe') == lease_id
if probe then redis.call('HDEL', portal_key, 'probe') end

local function ours(id)
  return mine or not redis.call('ZSCORE', leased_key, id)
end

local function dead_letter(id, meta)
  local score = redis.call('ZSCORE', leased_key, id) or redis.call('ZSCORE', queue_key, id)
  local dead_id = group_id .. ':' .. id .. ':' .. string.format('%.6f', now)
  redis.call('HSET', dead_data_key, dead_id, cjson.encode({
    id = dead_id, group = group_id, message_id = id,
    element = redis.call('HGET', items_key, id),
    code = code, description = description,
    attempts = tonumber(meta[1] or '0'), failures = tonumber(meta[2] or '0'),
    first_attempt_at = tonumber(meta[3] or '0'), last_attempt_at = tonumber(meta[4] or '0'),
    enqueued_at = tonumber(score or '0'), dead_at = now,
  }))
  redis.call('ZADD', dead_key, now, dead_id)
end

if action == DELIVERED or action == DEAD_LETTER then
  local meta = redis.call('HMGET', meta_key, 'attempts', 'failures', 'first_attempt_at',
                          'last_attempt_at')
  for _, id in ipairs(cjson.decode(sent_ids_json)) do
    if ours(id) and redis.call('HEXISTS', items_key, id) == 1 then
      if action == DEAD_LETTER then
        dead_letter(id, meta)
      else
        local score = redis.call('ZSCORE', leased_key, id) or redis.call('ZSCORE', queue_key, id)
        if score then observe(stats_key, 'latency_s', math.max(0, now - tonumber(score))) end
        if dedup_window_s > 0 then redis.call('ZADD', delivered_key, now, id) end
      end
      redis.call('HDEL', items_key, id)
      redis.call('ZREM', queue_key, id)
      redis.call('ZREM', leased_key, id)
      settled = settled + 1
    end
  end
  if action == DELIVERED and dedup_window_s > 0 and settled > 0 then
    -- remember delivered ids for the window: trimmed by score, the key expires with the window
    redis.call('ZREMRANGEBYSCORE', delivered_key, '-inf', now - dedup_window_s)
    redis.call('PEXPIRE', delivered_key, ms(dedup_window_s))
  end
  redis.call('HINCRBY', stats_key, action == DELIVERED and 'delivered' or 'dead_lettered', settled)
  -- (Redis refuses '-0' as an integer: a late settle that settled nothing must skip this)
  if settled > 0 then redis.call('HINCRBY', stats_key, 'pending', -settled) end
  if action == DELIVERED and settled > 0 then observe(stats_key, 'batch_size', settled) end
  redis.call('HDEL', meta_key, 'attempts', 'failures', 'expired', 'first_attempt_at',
             'last_attempt_at', 'not_before')
  if action == DELIVERED and portal_exists then
    redis.call('HDEL', portal_key, 'throttles', 'refused_refreshed', 'key_waits', 'bad_answers',
               'bad_answer_lease')
    if redis.call('HGET', portal_key, 'block_reason') == 'PORTAL_DELETED' then
      -- the closed portal answered: open again, every group due now
      redis.call('HDEL', portal_key, 'blocked_until', 'block_reason', 'block_description',
                 'blocked_at')
      for _, gid in ipairs(redis.call('SMEMBERS', groups_key)) do
        redis.call('ZADD', due_key, now, gid)
      end
    end
    if operating_reset_at ~= '' then
      redis.call('HSET', portal_key, 'operating_reset_at', operating_reset_at)
    end
  end
else
  -- RETRY, REFRESH, PARK: the items go back to the queue in their order
  if mine and redis.call('EXISTS', leased_key) == 1 then
    redis.call('ZUNIONSTORE', queue_key, 2, queue_key, leased_key, 'AGGREGATE', 'MIN')
    redis.call('DEL', leased_key)
  end
  if counts_failure then redis.call('HINCRBY', meta_key, 'failures', 1) end
  if counts_key_wait then
    if portal_exists then redis.call('HINCRBY', portal_key, 'key_waits', 1) end
    redis.call('HINCRBY', stats_key, 'token_key_missing', 1)
  end
  if bad_answer and portal_exists
     and redis.call('HGET', portal_key, 'bad_answer_lease') ~= lease_id then
    redis.call('HINCRBY', portal_key, 'bad_answers', 1)
    redis.call('HSET', portal_key, 'bad_answer_lease', lease_id)
  end
  if action == PARK_CONNECTOR and portal_exists then
    redis.call('HSET', portal_key, connector_park_field(group_id), cjson.encode({
      reason = code, description = description, at = now}))
  elseif delay_s > 0 then
    local wake = delay_s >= PARKED and PARKED or now + delay_s
    if portal_wide then
      if portal_exists then
        local current = tonumber(redis.call('HGET', portal_key, 'blocked_until') or '0') or 0
        if wake > current or probe then
          if redis.call('HGET', portal_key, 'block_reason') ~= code then
            redis.call('HSET', portal_key, 'blocked_at', tostring(now))
          end
          redis.call('HSET', portal_key, 'blocked_until', tostring(wake), 'block_reason', code,
                     'block_description', description)
        end
      end
    else
      redis.call('HSET', meta_key, 'not_before', tostring(wake))
    end
  end
  if action == RETRY and drain and portal_exists then
    redis.call('HINCRBY', portal_key, 'throttles', 1)
  end
  if drain then
    local burst = tonumber(redis.call('HGET', portal_key, 'rate_burst') or default_rate_burst)
    local rate = tonumber(redis.call('HGET', portal_key, 'rate_per_s') or default_rate_per_s)
    drain_budget(bucket_key, now, rate, burst)
  end
end

index_pending(pending_key, queue_key, group_id)
local delay = next_delay(queue_key, meta_key, portal_key, now, batch_size, window_s,
                         group_id)
local trigger = finish(due_key, leased_key, trigger_key, group_id, now, delay, task_id,
                       max_countdown_s, grace_s,
                       {ticks_key = ticks_key, soon_key = soon_key, s = tick_s})
return cjson.encode({settled = settled, trigger = trigger})
