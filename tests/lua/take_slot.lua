-- The limiter on its own, for tests. Returns {wait_ms (0: taken now), reserved = 1|0}.
local bucket_key = KEYS[1]
local rate_per_s = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local horizon_s = tonumber(ARGV[3])

local wait, reserved = take_slot(bucket_key, now_s(), rate_per_s, burst, horizon_s)
return cjson.encode({wait_ms = ms(wait), reserved = reserved and 1 or 0})
