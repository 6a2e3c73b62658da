-- Store a refreshed token pair, only if nobody stored a newer one since we read `seen_version`,
-- and release the refresh lock if it is still ours.
-- Returns {stored = 1|0}.
local portal_key = KEYS[1]
local lock_key = KEYS[2]
local lock_id = ARGV[1]
local seen_version = ARGV[2]
local access_token = ARGV[3]
local refresh_token = ARGV[4]
local expires_at = ARGV[5]
-- '1' when the refresh answered NO_AUTH_FOUND (the token it yields must then work)
local refused = ARGV[6] == '1'
-- the answer's endpoints that passed the checks ('' : keep the stored one)
local client_endpoint = ARGV[7]
local server_endpoint = ARGV[8]

if redis.call('HGET', portal_key, 'version') ~= seen_version then
  return cjson.encode({stored = 0})
end
redis.call('HSET', portal_key, 'access_token', access_token, 'refresh_token', refresh_token,
           'expires_at', expires_at, 'source', 'refresh')
if client_endpoint ~= '' then redis.call('HSET', portal_key, 'client_endpoint', client_endpoint) end
if server_endpoint ~= '' then redis.call('HSET', portal_key, 'server_endpoint', server_endpoint) end
redis.call('HDEL', portal_key, 'refresh_lost')
local version = redis.call('HINCRBY', portal_key, 'version', 1)
if refused then
  redis.call('HSET', portal_key, 'refused_refreshed', version)
else
  redis.call('HDEL', portal_key, 'refused_refreshed')
end
if redis.call('GET', lock_key) == lock_id then redis.call('DEL', lock_key) end
return cjson.encode({stored = 1})
