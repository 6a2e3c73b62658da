"""Fast, exact recovery of a dead consumer's messages on the Redis broker.

kombu emulates acks on Redis: a delivered message is copied to the `unacked` hash and goes back
to its queue after `visibility_timeout`, whoever holds it. That timeout must outlive the longest
task, so a SIGKILLed worker's reserved messages waited minutes. And BRPOP takes a message off
its queue before the consumer has recorded it anywhere: a consumer killed in between, or a reply
lost with the connection when Redis dies, loses the message.

Here (used by worker/transport/redis_channel.py):

- **Reliable fetch.** A consumer takes a message with one Lua script (`FETCH`) that pops it and,
  atomically, records it in kombu's unacked hash and index *and* under the consumer's holder id
  (`unacked_holders`: delivery tag -> holder), and refreshes the holder's heartbeat key. There
  is no moment when a popped message exists only in a socket. When every queue is empty the
  consumer waits with `BLMOVE q q RIGHT RIGHT` on one queue (a blocking wait that takes
  nothing), then fetches again; the queue it waits on rotates.
- **Heartbeat.** Each consumer keeps `unacked_alive:<holder>` alive (expiry `consumer_ttl`,
  `DELIVERY_CONSUMER_TTL_S`) from a thread every quarter of it. A fetch whose reply was lost
  (the connection broke) retires the holder id: its records are left to expire like a dead
  consumer's.
- **Restore.** Every live worker's restore cycle (every fifth of the TTL, one worker at a time
  under a mutex) puts back the messages of holders whose heartbeat expired, each with one Lua
  script (`RESTORE`) that checks, atomically, that the holder is still silent and the message
  still unacked, then moves it to the front of its queue. A live consumer's messages are never
  put back; kombu's visibility timeout stays the fallback for messages without a holder record.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

log = logging.getLogger("worker.transport.redis_channel")

HOLDERS_KEY = "unacked_holders"
ALIVE_PREFIX = "unacked_alive:"
RESTORE_MUTEX = "unacked_holders_mutex"

#: take the first message of the first non-empty queue and record who holds it, atomically
#: KEYS: 1 unacked index, 2 unacked, 3 holders, 4 this consumer's heartbeat, 5.. queue keys
#: ARGV: 1 holder id, 2 now (the client's clock, as kombu's own index), 3 heartbeat TTL ms
#: Returns {queue key, message} or nil. A message without a delivery tag (not written by kombu)
#: is returned unrecorded; the consumer records it as kombu does.
FETCH = """
for i = 5, #KEYS do
  local raw = redis.call('RPOP', KEYS[i])
  if raw then
    local ok, message = pcall(cjson.decode, raw)
    local props = ok and type(message) == 'table' and message.properties
    local tag = type(props) == 'table' and props.delivery_tag
    if type(tag) == 'string' then
      local info = type(props.delivery_info) == 'table' and props.delivery_info or {}
      local entry = '[' .. raw .. ',' .. cjson.encode(info.exchange or '') .. ','
                    .. cjson.encode(info.routing_key or '') .. ']'
      redis.call('ZADD', KEYS[1], ARGV[2], tag)
      redis.call('HSET', KEYS[2], tag, entry)
      redis.call('HSET', KEYS[3], tag, ARGV[1])
      redis.call('SET', KEYS[4], '1', 'PX', ARGV[3])
    end
    return {KEYS[i], raw}
  end
end
return false
"""

#: put back one message of a silent holder, if it is still silent and the message still unacked
#: KEYS: 1 unacked index, 2 unacked, 3 holders, 4 the holder's heartbeat, 5.. target queues
#: ARGV: 1 delivery tag, 2 the unacked entry as read, 3 the payload to push (redelivered)
RESTORE = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
for i = 5, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[3]) end
return 1
"""


def restore_orphans(channel: Any, client: Any) -> int:
    """Put back every message whose holder's heartbeat expired; returns how many."""
    holders = {tag: h.decode() for tag, h in (client.hgetall(HOLDERS_KEY) or {}).items()}
    if not holders:
        return 0
    distinct = sorted(set(holders.values()))
    alive = dict(zip(distinct, client.mget([ALIVE_PREFIX + h for h in distinct]), strict=True))
    orphans = [(tag, h) for tag, h in holders.items() if alive[h] is None]
    if not orphans:
        return 0
    entries = client.hmget(channel.unacked_key, [tag for tag, _ in orphans])
    restore = client.register_script(RESTORE)
    restored = 0
    for (tag, holder), entry in zip(orphans, entries, strict=True):
        if entry is None:  # acked meanwhile
            continue
        payload, exchange, routing_key = json.loads(entry)
        with contextlib.suppress(KeyError, TypeError):
            payload["headers"]["redelivered"] = True
            payload["properties"]["delivery_info"]["redelivered"] = True
        priority = channel._get_message_priority(payload, reverse=False)
        queues = [
            channel._q_for_pri(queue, priority) for queue in channel._lookup(exchange, routing_key)
        ]
        keys = [
            channel.unacked_index_key,
            channel.unacked_key,
            HOLDERS_KEY,
            ALIVE_PREFIX + holder,
        ]
        restored += int(restore(keys=[*keys, *queues], args=[tag, entry, json.dumps(payload)]))
    if restored:
        log.warning("restored %d messages of consumers whose heartbeat expired", restored)
    return restored
