-- Add one confirmation to its group, coalescing a repeat of a pending im.message_id.
-- ARGV: 1 group id, 2 message id, 3 element JSON, 4 batch size, 5 window s, 6 new task id,
--       7 max countdown s, 8 grace s
-- Returns {added (0: coalesced), send, delay_ms} (see finish).
local now = now_s()
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then
  redis.call('HINCRBY', KEYS[10], 'coalesced', 1)
  return {0, 0, -1}
end
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('SADD', KEYS[11], ARGV[1])
redis.call('HINCRBY', KEYS[10], 'ingested', 1)
redis.call('HINCRBY', KEYS[10], 'pending', 1)
local n = redis.call('ZCARD', KEYS[2])
local batch = tonumber(ARGV[4])
if n ~= 1 and n % batch ~= 0 then return {1, 0, -1} end
local r = finish(ARGV[1], now, next_delay(now, batch, tonumber(ARGV[5])), ARGV[6],
                 tonumber(ARGV[7]), tonumber(ARGV[8]))
return {1, r[1], r[2]}
