-- A producer-owned portal needs fresh tokens: claim the one request for the token version the
-- caller holds. Returns {state = 'claimed'} when the request must be sent now, 'sent' when it
-- was sent for this version already, 'stale' when the stored tokens moved on meanwhile.
local portal_key = KEYS[1]
local token_version = ARGV[1]

if redis.call('HGET', portal_key, 'version') ~= token_version then
  return cjson.encode({state = 'stale'})
end
if redis.call('HGET', portal_key, 'token_requested') == token_version then
  return cjson.encode({state = 'sent'})
end
redis.call('HSET', portal_key, 'token_requested', token_version)
return cjson.encode({state = 'claimed'})
