-- Add many confirmations to one group in one call (delivery.confirm_many), each exactly as
-- ingest.lua adds one: a repeat of a pending im.message_id is coalesced, a repeat of one the
-- group delivered within the deduplication window is dropped. One trigger at most:
-- when the group was empty before, or the call filled a batch.
-- `items_json` is a JSON array of [message_id, element_json] pairs, in arrival order.
-- Returns {added = n, coalesced = n, deduplicated = n, trigger = {send, delay_ms}}.
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
local items_json = ARGV[2]
local batch_size = tonumber(ARGV[3])
local window_s = tonumber(ARGV[4])
local task_id = ARGV[5]
local max_countdown_s = tonumber(ARGV[6])
local grace_s = tonumber(ARGV[7])
local dedup_window_s = tonumber(ARGV[8])
local tick_s = tonumber(ARGV[9])

local now = now_s()
local before = redis.call('ZCARD', queue_key)
local counts = {added = 0, coalesced = 0, deduplicated = 0}
for _, item in ipairs(cjson.decode(items_json)) do
  local outcome = add_item(items_key, queue_key, delivered_key, now, dedup_window_s, item[1],
                           item[2])
  counts[outcome] = counts[outcome] + 1
end
local added, coalesced, deduplicated = counts.added, counts.coalesced, counts.deduplicated
if coalesced > 0 then redis.call('HINCRBY', stats_key, 'coalesced', coalesced) end
if deduplicated > 0 then redis.call('HINCRBY', stats_key, 'deduplicated', deduplicated) end
local none = {send = 0, delay_ms = NO_FLUSH_MS}
if added == 0 then
  return cjson.encode({added = 0, coalesced = coalesced, deduplicated = deduplicated,
                      trigger = none})
end
redis.call('SADD', groups_key, group_id)
redis.call('ZADD', pending_key, 'NX', now, group_id)
redis.call('HINCRBY', stats_key, 'ingested', added)
redis.call('HINCRBY', stats_key, 'pending', added)
local after = before + added
if before ~= 0 and math.floor(after / batch_size) == math.floor(before / batch_size) then
  return cjson.encode({added = added, coalesced = coalesced, deduplicated = deduplicated,
                      trigger = none})
end
local delay = next_delay(queue_key, meta_key, portal_key, now, batch_size, window_s,
                         group_id)
local trigger = finish(due_key, leased_key, trigger_key, group_id, now, delay, task_id,
                       max_countdown_s, grace_s, {ticks_key = ticks_key, soon_key = soon_key, s = tick_s})
return cjson.encode({added = added, coalesced = coalesced, deduplicated = deduplicated,
                     trigger = trigger})
