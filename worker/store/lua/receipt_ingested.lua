-- The confirmations of these records are in their groups' buffers: each record shrinks to what
-- deduplicates a repeated receipt until its TTL (state 2, the element dropped).
-- Returns {marked = n}.
local records_key = KEYS[1]
local record_ids_json = ARGV[1]

local marked = 0
for _, record_id in ipairs(cjson.decode(record_ids_json)) do
  local raw = redis.call('HGET', records_key, record_id)
  if raw then
    local rec = cjson.decode(raw)
    if rec.s == 1 then
      rec.s = 2
      rec.el = nil
      rec.c = nil
      rec.line = nil
      redis.call('HSET', records_key, record_id, cjson.encode(rec))
      marked = marked + 1
    end
  end
end
return cjson.encode({marked = marked})
