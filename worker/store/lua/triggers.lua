-- The flush trigger's Lua half (the protocol is described in worker/store/triggers.py): the
-- portal's trigger key holds 'task_id:at' while one delayed flush task is scheduled for it. A
-- wait is rounded up to the next tick (`tick.s` seconds; 0: no ticks), and one task per tick
-- flushes every portal whose trigger fell in it: the fleet-wide `ticks` zset holds each
-- scheduled tick's task (score: the tick's number), `soon` each group's wanted time.

-- Whether the portal's trigger is claimed for a flush at `at` or earlier.
local function claimed_by(trigger_key, at)
  local current = redis.call('GET', trigger_key)
  if not current then return false end
  local current_at = tonumber(string.match(current, ':([%d%.]+)$'))
  return current_at ~= nil and current_at <= at + 0.001
end

-- Claim the trigger for a flush at `at`, unless one at least as early is claimed already.
-- Returns true when the caller must send flush task `task_id`.
local function claim_trigger(trigger_key, task_id, at, ttl_s)
  if claimed_by(trigger_key, at) then return false end
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

-- The task of tick `number`: the one scheduled already (send false), else `task_id` (send
-- true). Ticks older than ten minutes are forgotten.
local function claim_tick(tick, task_id, number)
  redis.call('ZREMRANGEBYSCORE', tick.ticks_key, '-inf', '(' .. (number - 600 / tick.s))
  local scheduled = redis.call('ZRANGEBYSCORE', tick.ticks_key, number, number, 'LIMIT', 0, 1)
  if scheduled[1] then return scheduled[1], false end
  redis.call('ZADD', tick.ticks_key, number, task_id)
  return task_id, true
end

-- For a short wait, claim the portal's trigger for a flush task naming group `gid`: a task of
-- its own when the wait is none or ticks are off, else the task of the tick the wait ends in.
-- Returns {send = 1|0, delay_ms = ms | PARKED_MS, group_id = gid, tick = number or nil}.
local function claim(trigger_key, task_id, gid, now, delay, max_countdown, grace, tick)
  if delay >= PARKED then return {send = 0, delay_ms = PARKED_MS, group_id = gid} end
  if delay > max_countdown then return {send = 0, delay_ms = ms(delay), group_id = gid} end
  if delay <= 0 or tick.s <= 0 then
    local sent = claim_trigger(trigger_key, task_id, now + delay, delay + grace)
    return {send = sent and 1 or 0, delay_ms = ms(delay), group_id = gid}
  end
  local number = math.ceil((now + delay) / tick.s - 0.0001)
  local at = number * tick.s
  if claimed_by(trigger_key, at) then return {send = 0, delay_ms = ms(delay), group_id = gid} end
  local tick_task_id, sent = claim_tick(tick, task_id, number)
  redis.call('SET', trigger_key, tick_task_id .. ':' .. string.format('%.3f', at), 'PX',
             ms(at - now + grace))
  redis.call('ZADD', tick.soon_key, at, gid)
  return {send = sent and 1 or 0, delay_ms = ms(at - now), group_id = gid, tick = number}
end

-- Record when the group is next due and, for short waits, claim the portal's trigger.
-- Returns {send = 1|0, delay_ms = ms | NO_FLUSH_MS | PARKED_MS, group_id}.
local function finish(due_key, leased_key, trigger_key, gid, now, delay, task_id, max_countdown,
                      grace, tick)
  if delay < 0 then
    if redis.call('EXISTS', leased_key) == 0 then redis.call('ZREM', due_key, gid) end
    return {send = 0, delay_ms = NO_FLUSH_MS, group_id = gid}
  end
  due_at(due_key, gid, now, delay, max_countdown, grace)
  return claim(trigger_key, task_id, gid, now, delay, max_countdown, grace, tick)
end
