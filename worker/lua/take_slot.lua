-- KEYS[1] bucket; ARGV rate, burst, horizon s. Returns {wait ms (0: taken now), reserved 1/0}.
local wait, reserved = take_slot(KEYS[1], now_s(), tonumber(ARGV[1]), tonumber(ARGV[2]),
                                 tonumber(ARGV[3]))
return {ms(wait), reserved and 1 or 0}
