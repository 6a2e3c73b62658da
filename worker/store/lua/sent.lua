-- Keep a `delivery.sent` record: the Bitrix24 ids of one message, found later by its external
-- ids. A receipt already waiting for one of those ids confirms the record at once (atomically).
-- Returns {kind = kept | confirm | repeat | conflict | taken | full, ...}:
--   confirm: {el, date}: ingest the confirmation (then receipt_ingested.lua marks it);
--   conflict: the record's im is kept with other external ids; taken: {field, other}: an external
--   id is kept for another record; full: the portal holds max_records records.
local records_key = KEYS[1]
local ids_key = KEYS[2]
local kept_key = KEYS[3]
local open_key = KEYS[4]
local waiting_key = KEYS[5]
local waiting_data_key = KEYS[6]
local receipts_due_key = KEYS[7]
local stats_key = KEYS[8]
local member_id = ARGV[1]
local record_id = ARGV[2]
local fields_json = ARGV[3]
local el_json = ARGV[4]
local line = ARGV[5]
local connector = ARGV[6]
local ttl_s = tonumber(ARGV[7])
local max_records = tonumber(ARGV[8])

local now = now_s()
local fields = cjson.decode(fields_json)
local existing = redis.call('HGET', records_key, record_id)
if existing then
  local rec = cjson.decode(existing)
  local same = #rec.f == #fields
  for i, f in ipairs(fields) do same = same and rec.f[i] == f end
  if not same then return cjson.encode({kind = 'conflict'}) end
  redis.call('HINCRBY', stats_key, 'sent_repeated', 1)
  if rec.s == 1 then  -- confirmed, its ingest not yet marked done: run it again (coalesced)
    return cjson.encode({kind = 'confirm', el = rec.el, date = rec.date})
  end
  return cjson.encode({kind = 'repeat'})
end
for _, f in ipairs(fields) do
  local other = redis.call('HGET', ids_key, f)
  if other then return cjson.encode({kind = 'taken', field = f, other = other}) end
end
if redis.call('ZCARD', kept_key) >= max_records then
  redis.call('HINCRBY', stats_key, 'sent_over_cap', 1)
  return cjson.encode({kind = 'full'})
end
local date = nil
for _, f in ipairs(fields) do
  local waiting = redis.call('HGET', waiting_data_key, f)
  if waiting then
    if date == nil then date = cjson.decode(waiting).date end
    redis.call('HDEL', waiting_data_key, f)
    redis.call('ZREM', waiting_key, f)
  end
  redis.call('HSET', ids_key, f, record_id)
end
local rec = {s = 0, f = fields, el = el_json, line = line, c = connector}
if date ~= nil then rec.s = 1; rec.date = date end
redis.call('HSET', records_key, record_id, cjson.encode(rec))
redis.call('ZADD', kept_key, now, record_id)
if date == nil then redis.call('ZADD', open_key, now, record_id) end
redis.call('ZADD', receipts_due_key, 'LT', now + ttl_s, member_id)
redis.call('HINCRBY', stats_key, 'sent_kept', 1)
if date ~= nil then
  redis.call('HINCRBY', stats_key, 'receipts_matched', 1)
  return cjson.encode({kind = 'confirm', el = el_json, date = date})
end
return cjson.encode({kind = 'kept'})
