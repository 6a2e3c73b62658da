-- Release a lock only if it is still ours. Returns {released = 1|0}.
local lock_key = KEYS[1]
local lock_id = ARGV[1]

if redis.call('GET', lock_key) == lock_id then
  return cjson.encode({released = redis.call('DEL', lock_key)})
end
return cjson.encode({released = 0})
