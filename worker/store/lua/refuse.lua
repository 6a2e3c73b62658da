-- The portal refused this token version (401): remember it, so no flush calls with it again;
-- begin.lua makes them wait for the refresh, or refresh first. A newer version makes it moot.
-- Returns {recorded = true | false}.
local portal_key = KEYS[1]
local token_version = ARGV[1]
local code = ARGV[2]

if (redis.call('HGET', portal_key, 'version') or '0') ~= token_version then
  return cjson.encode({recorded = false})
end
redis.call('HSET', portal_key, 'refused_version', token_version, 'refused_code', code)
return cjson.encode({recorded = true})
