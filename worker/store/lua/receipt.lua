-- A `delivery.delivered` receipt: each external id judged on its own. An id whose record is
-- kept confirms it (once per record: its state goes 0 -> 1, and the caller ingests it); an id
-- of a record already ingested is deduplicated; an id with no record waits for its `sent` until
-- now + wait_s (the sweep rejects it then). Returns {confirm = [{id, el, line, c, date}],
-- outcomes = [matched | deduplicated | waiting, ...] in the order of fields}; an empty `confirm`
-- comes back as {} (cjson), which the caller reads as none.
local records_key = KEYS[1]
local ids_key = KEYS[2]
local kept_key = KEYS[3]
local open_key = KEYS[4]
local waiting_key = KEYS[5]
local waiting_data_key = KEYS[6]
local receipts_due_key = KEYS[7]
local stats_key = KEYS[8]
local member_id = ARGV[1]
local fields_json = ARGV[2]
local receipt_json = ARGV[3]
local date = tonumber(ARGV[4])
local wait_s = tonumber(ARGV[5])

local now = now_s()
local confirm, outcomes, seen = {}, {}, {}
for i, f in ipairs(cjson.decode(fields_json)) do
  local record_id = redis.call('HGET', ids_key, f)
  local raw = record_id and redis.call('HGET', records_key, record_id)
  if raw then
    local rec = cjson.decode(raw)
    if seen[record_id] then
      outcomes[i] = 'matched'  -- another id of a record this receipt already confirms
    elseif rec.s == 2 then
      outcomes[i] = 'deduplicated'
      redis.call('HINCRBY', stats_key, 'receipts_deduplicated', 1)
    else
      if rec.s == 0 then
        rec.s = 1
        rec.date = date
        redis.call('HSET', records_key, record_id, cjson.encode(rec))
        redis.call('ZREM', open_key, record_id)
        redis.call('HINCRBY', stats_key, 'receipts_matched', 1)
      end
      seen[record_id] = true
      outcomes[i] = 'matched'
      confirm[#confirm + 1] = {id = record_id, el = rec.el, line = rec.line, c = rec.c,
                               date = rec.date}
    end
  else
    outcomes[i] = 'waiting'
    if redis.call('HSETNX', waiting_data_key, f, receipt_json) == 1 then
      redis.call('ZADD', waiting_key, now + wait_s, f)
      redis.call('ZADD', receipts_due_key, 'LT', now + wait_s, member_id)
      redis.call('HINCRBY', stats_key, 'receipts_waiting', 1)
    end
  end
end
return cjson.encode({confirm = confirm, outcomes = outcomes})
