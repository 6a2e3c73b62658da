-- A portal moved: store its new REST address for every group, only if nobody changed the
-- address since the caller read it. Returns {moved = 1|0}.
local portal_key = KEYS[1]
local old_endpoint = ARGV[1]
local new_endpoint = ARGV[2]

if redis.call('HGET', portal_key, 'client_endpoint') ~= old_endpoint then
  return cjson.encode({moved = 0})
end
redis.call('HSET', portal_key, 'client_endpoint', new_endpoint)
return cjson.encode({moved = 1})
