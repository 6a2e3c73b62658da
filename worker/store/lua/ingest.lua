-- Add one confirmation to its group, coalescing a repeat of a pending im.message_id and
-- dropping a repeat of one the group delivered within the deduplication window.
-- Returns {added = 1|0|2 (0: coalesced, 2: deduplicated), trigger = {send, delay_ms}}
-- (see finish).
local items_key = KEYS[1]
local queue_key = KEYS[2]
local leased_key = KEYS[3]
local meta_key = KEYS[4]
local portal_key = KEYS[5]
local due_key = KEYS[6]
local stats_key = KEYS[7]
local groups_key = KEYS[8]
local trigger_key = KEYS[9]
local delivered_key = KEYS[10]
local pending_key = KEYS[11]
local ticks_key = KEYS[12]
local soon_key = KEYS[13]
local group_id = ARGV[1]
local message_id = ARGV[2]
local element_json = ARGV[3]
local batch_size = tonumber(ARGV[4])
local window_s = tonumber(ARGV[5])
local task_id = ARGV[6]
local max_countdown_s = tonumber(ARGV[7])
local grace_s = tonumber(ARGV[8])
local dedup_window_s = tonumber(ARGV[9])
local tick_s = tonumber(ARGV[10])

local now = now_s()
local outcome = add_item(items_key, queue_key, delivered_key, now, dedup_window_s, message_id,
                         element_json)
if outcome ~= 'added' then
  redis.call('HINCRBY', stats_key, outcome, 1)
  return cjson.encode({added = outcome == 'deduplicated' and 2 or 0,
                       trigger = {send = 0, delay_ms = NO_FLUSH_MS}})
end
redis.call('SADD', groups_key, group_id)
redis.call('ZADD', pending_key, 'NX', now, group_id)
redis.call('HINCRBY', stats_key, 'ingested', 1)
redis.call('HINCRBY', stats_key, 'pending', 1)
local n = redis.call('ZCARD', queue_key)
if n ~= 1 and n % batch_size ~= 0 then
  return cjson.encode({added = 1, trigger = {send = 0, delay_ms = NO_FLUSH_MS}})
end
local delay = next_delay(queue_key, meta_key, portal_key, now, batch_size, window_s,
                         group_id)
local trigger = finish(due_key, leased_key, trigger_key, group_id, now, delay, task_id,
                       max_countdown_s, grace_s, {ticks_key = ticks_key, soon_key = soon_key, s = tick_s})
return cjson.encode({added = 1, trigger = trigger})
