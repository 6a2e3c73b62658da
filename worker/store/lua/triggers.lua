-- The flush trigger's Lua half (the protocol is described in worker/store/triggers.py): the
-- portal's trigger key holds 'task_id:at' while one delayed flush task is scheduled for it.

-- Claim the trigger for a flush at `at`, unless one at least as early is claimed already.
-- Returns true when the caller must send flush task `task_id`.
local function claim_trigger(trigger_key, task_id, at, ttl_s)
  local current = redis.call('GET', trigger_key)
  if current then
    local current_at = tonumber(string.match(current, ':([%d%.]+)$'))
    if current_at and current_at <= at + 0.001 then return false end
  end
  redis.call('SET', trigger_key, task_id .. ':' .. string.format('%.3f', at), 'PX', ms(ttl_s))
  return true
end

-- The flush task `task_id` started: its trigger is spent, let the next one be claimed.
local function release_trigger(trigger_key, task_id)
  local trigger = redis.call('GET', trigger_key)
  if trigger and string.sub(trigger, 1, #task_id + 1) == task_id .. ':' then
    redis.call('DEL', trigger_key)
  end
end

-- Record when the group is next due (for the sweep), `delay` seconds from now (>= 0).
local function due_at(due_key, gid, now, delay, max_countdown, grace)
  if delay >= PARKED then
    redis.call('ZADD', due_key, PARKED, gid)
  elseif delay > max_countdown then
    redis.call('ZADD', due_key, now + delay, gid)
  else
    redis.call('ZADD', due_key, now + delay + grace, gid)
  end
end

-- For a short wait, claim the portal's trigger for a flush task naming group `gid`.
-- Returns {send = 1|0, delay_ms = ms | PARKED_MS, group_id = gid}.
local function claim(trigger_key, task_id, gid, now, delay, max_countdown, grace)
  if delay >= PARKED then return {send = 0, delay_ms = PARKED_MS, group_id = gid} end
  if delay > max_countdown then return {send = 0, delay_ms = ms(delay), group_id = gid} end
  local sent = claim_trigger(trigger_key, task_id, now + delay, delay + grace)
  return {send = sent and 1 or 0, delay_ms = ms(delay), group_id = gid}
end

-- Record when the group is next due and, for short waits, claim the portal's trigger.
-- Returns {send = 1|0, delay_ms = ms | NO_FLUSH_MS | PARKED_MS, group_id}.
local function finish(due_key, leased_key, trigger_key, gid, now, delay, task_id, max_countdown,
                      grace)
  if delay < 0 then
    if redis.call('EXISTS', leased_key) == 0 then redis.call('ZREM', due_key, gid) end
    return {send = 0, delay_ms = NO_FLUSH_MS, group_id = gid}
  end
  due_at(due_key, gid, now, delay, max_countdown, grace)
  return claim(trigger_key, task_id, gid, now, delay, max_countdown, grace)
end
