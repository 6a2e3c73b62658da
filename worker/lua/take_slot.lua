-- KEYS[1] bucket; ARGV rate, burst. Returns the wait in ms (0: a slot was taken).
return ms(take_slot(KEYS[1], now_s(), tonumber(ARGV[1]), tonumber(ARGV[2])))
