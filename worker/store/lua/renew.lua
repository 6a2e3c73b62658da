-- Extend a flush's lease while its call runs, only if the lease is still ours.
-- Returns {extended = 1|0 (0: the lease is gone or another flusher's)}.
local lease_key = KEYS[1]
local inflight_key = KEYS[2]
local due_key = KEYS[3]
local group_id = ARGV[1]
local lease_id = ARGV[2]
local lease_ttl_s = tonumber(ARGV[3])
-- the sweep looks at the group again only after the lease could have expired
local lease_margin_s = tonumber(ARGV[4])

local now = now_s()
if redis.call('GET', lease_key) ~= lease_id then
  return cjson.encode({extended = 0})
end
redis.call('PEXPIRE', lease_key, ms(lease_ttl_s))
redis.call('ZADD', inflight_key, now + lease_ttl_s, lease_id)
redis.call('ZADD', due_key, now + lease_ttl_s + lease_margin_s, group_id)
return cjson.encode({extended = 1})
