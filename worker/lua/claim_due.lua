-- The sweep: take up to `limit` groups whose due time has passed, and push each one's due
-- time `grace_s` on, so a lost flush is re-triggered but a pending one is not doubled.
-- Returns {group_ids = [...]}.
local due_key = KEYS[1]
local grace_s = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])

local now = now_s()
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, limit)
for _, gid in ipairs(due) do
  redis.call('ZADD', due_key, now + grace_s, gid)
end
return cjson.encode({group_ids = due})
