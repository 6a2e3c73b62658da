-- A refresh of the portal's tokens ended (stored, failed, or found a newer version): every group
-- that waited for it is due again. The caller sends their flush tasks now; their due time is
-- pushed `grace_s` on, so the sweep re-triggers only those whose task was lost (as claim_due).
-- Returns {group_ids = [...]}.
local refresh_waiters_key = KEYS[1]
local due_key = KEYS[2]
local grace_s = tonumber(ARGV[1])

local now = now_s()
local waiting = redis.call('SMEMBERS', refresh_waiters_key)
redis.call('DEL', refresh_waiters_key)
for _, gid in ipairs(waiting) do
  redis.call('ZADD', due_key, now + grace_s, gid)
end
return cjson.encode({group_ids = waiting})
