-- The sweep: take up to `limit` groups whose due time has passed, and push each one's due
-- time `grace_s` on, so a lost flush is re-triggered but a pending one is not doubled.
-- Records when it ran (Redis' clock) for `health beat` and the exporter.
-- Returns {group_ids = [...]}.
local due_key = KEYS[1]
local last_run_key = KEYS[2]
local grace_s = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])

local now = now_s()
redis.call('SET', last_run_key, string.format('%.3f', now))
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, limit)
for _, gid in ipairs(due) do
  redis.call('ZADD', due_key, now + grace_s, gid)
end
return cjson.encode({group_ids = due})
