-- Put back one message of a consumer whose heartbeat expired (worker/transport/kombu_redis/
-- recovery.py), if the holder is still silent and the message still unacked as it was read:
-- out of kombu's unacked index and hash and the holders hash, to the front of its queues
-- (RPUSH: kombu's consumers pop from the right).
-- Returns {restored = 1|0}.
local unacked_index_key = KEYS[1]
local unacked_key = KEYS[2]
local holders_key = KEYS[3]
local alive_key = KEYS[4]
local queue_keys = {unpack(KEYS, 5)}
local delivery_tag = ARGV[1]
local entry = ARGV[2]
local payload = ARGV[3]

if redis.call('EXISTS', alive_key) == 1 then return cjson.encode({restored = 0}) end
if redis.call('HGET', unacked_key, delivery_tag) ~= entry then
  return cjson.encode({restored = 0})
end
redis.call('ZREM', unacked_index_key, delivery_tag)
redis.call('HDEL', unacked_key, delivery_tag)
redis.call('HDEL', holders_key, delivery_tag)
for _, queue_key in ipairs(queue_keys) do redis.call('RPUSH', queue_key, payload) end
return cjson.encode({restored = 1})
