-- The sweep: take up to ARGV[2] groups whose due time has passed, and push each one's due
-- time ARGV[1] seconds on, so a lost flush is re-triggered but a pending one is not doubled.
-- KEYS[1] due. Returns the group ids.
local now = now_s()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, gid in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), gid)
end
return due
