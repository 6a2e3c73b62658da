-- A tick's flush task started (worker/store/triggers.py): forget its tick, so a later wait in
-- it claims a task of its own, and list every group wanted by the tick's time or by now, the
-- later of the two (a late tick catches up on the ticks behind it; an early one leaves the
-- next tick's groups to it), up to `limit`. A group leaves `soon` when a flush of its portal
-- begins (begin.lua), not here: a tick's task that dies before that is delivered again and
-- finds them still listed.
-- Returns {group_ids = [...], more = 1|0}.
local ticks_key = KEYS[1]
local soon_key = KEYS[2]
local tick = tonumber(ARGV[1])
local tick_s = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

redis.call('ZREMRANGEBYSCORE', ticks_key, tick, tick)
local upto = math.max(now_s(), tick * tick_s) + 0.0005
local gids = redis.call('ZRANGEBYSCORE', soon_key, '-inf', upto, 'LIMIT', 0, limit + 1)
local more = #gids > limit
if more then gids[#gids] = nil end
return cjson.encode({group_ids = gids, more = more and 1 or 0})
