-- One portal's share of the sweep: records past their TTL go (those never confirmed counted),
-- receipts that waited wait_s for their `sent` in vain are taken out for rejection, and the
-- portal's next due time is set (or it leaves the index). At most `limit` of each per call.
-- Returns {expired = n, unconfirmed = [record ids never confirmed], late = [JSON receipts],
-- late_fields = [their fields]}.
local records_key = KEYS[1]
local ids_key = KEYS[2]
local kept_key = KEYS[3]
local open_key = KEYS[4]
local waiting_key = KEYS[5]
local waiting_data_key = KEYS[6]
local receipts_due_key = KEYS[7]
local stats_key = KEYS[8]
local member_id = ARGV[1]
local ttl_s = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

local now = now_s()
local old = redis.call('ZRANGEBYSCORE', kept_key, '-inf', now - ttl_s, 'LIMIT', 0, limit)
local unconfirmed = {}
for _, record_id in ipairs(old) do
  local raw = redis.call('HGET', records_key, record_id)
  if raw then
    for _, f in ipairs(cjson.decode(raw).f) do
      if redis.call('HGET', ids_key, f) == record_id then redis.call('HDEL', ids_key, f) end
    end
    redis.call('HDEL', records_key, record_id)
  end
  redis.call('ZREM', kept_key, record_id)
  if redis.call('ZREM', open_key, record_id) == 1 then unconfirmed[#unconfirmed + 1] = record_id end
end
if #old > 0 then redis.call('HINCRBY', stats_key, 'sent_expired', #old) end
if #unconfirmed > 0 then
  redis.call('HINCRBY', stats_key, 'sent_expired_unconfirmed', #unconfirmed)
end
local late_fields = redis.call('ZRANGEBYSCORE', waiting_key, '-inf', now, 'LIMIT', 0, limit)
local late = {}
for i, f in ipairs(late_fields) do
  late[i] = redis.call('HGET', waiting_data_key, f) or '{}'
  redis.call('HDEL', waiting_data_key, f)
  redis.call('ZREM', waiting_key, f)
end
if #late > 0 then redis.call('HINCRBY', stats_key, 'receipts_unmatched', #late) end
local next_at = nil
local first = redis.call('ZRANGE', kept_key, 0, 0, 'WITHSCORES')
if #first > 0 then next_at = tonumber(first[2]) + ttl_s end
first = redis.call('ZRANGE', waiting_key, 0, 0, 'WITHSCORES')
if #first > 0 and (next_at == nil or tonumber(first[2]) < next_at) then
  next_at = tonumber(first[2])
end
if next_at == nil then
  redis.call('ZREM', receipts_due_key, member_id)
else
  redis.call('ZADD', receipts_due_key, next_at, member_id)
end
local out = {expired = #old, unconfirmed = unconfirmed, late = late, late_fields = late_fields}
if #unconfirmed == 0 then out.unconfirmed = nil end
if #late == 0 then out.late = nil; out.late_fields = nil end
return cjson.encode(out)
