-- The Redis broker's reliable fetch (worker/transport/kombu_redis/channel.py): take the first
-- message of the first non-empty queue and, in the same step, record who holds it: kombu's
-- unacked index and hash (as kombu records a delivered message), the holder of the delivery tag,
-- and the holder's heartbeat. No moment exists when a popped message lives only in a socket.
-- `now` is the client's clock, as kombu's own unacked index uses it.
-- A message without a delivery tag (not written by kombu) is returned unrecorded; the consumer
-- records it as kombu does.
-- Returns {queue = the queue key, message = the raw message} or {} when every queue is empty.
local unacked_index_key = KEYS[1]
local unacked_key = KEYS[2]
local holders_key = KEYS[3]
local alive_key = KEYS[4]
local queue_keys = {unpack(KEYS, 5)}
local holder = ARGV[1]
local now = ARGV[2]
local heartbeat_ttl_ms = ARGV[3]

for _, queue_key in ipairs(queue_keys) do
  local raw = redis.call('RPOP', queue_key)
  if raw then
    local ok, message = pcall(cjson.decode, raw)
    local props = ok and type(message) == 'table' and message.properties
    local tag = type(props) == 'table' and props.delivery_tag
    if type(tag) == 'string' then
      local info = type(props.delivery_info) == 'table' and props.delivery_info or {}
      local entry = '[' .. raw .. ',' .. cjson.encode(info.exchange or '') .. ','
                    .. cjson.encode(info.routing_key or '') .. ']'
      redis.call('ZADD', unacked_index_key, now, tag)
      redis.call('HSET', unacked_key, tag, entry)
      redis.call('HSET', holders_key, tag, holder)
      redis.call('SET', alive_key, '1', 'PX', heartbeat_ttl_ms)
    end
    return cjson.encode({queue = queue_key, message = raw})
  end
end
return cjson.encode({})
