"""Fast, exact recovery of a dead consumer's messages on the Redis broker.

kombu emulates acks on Redis: a delivered message is copied to the `unacked` hash and goes back
to its queue after `visibility_timeout`, whoever holds it. That timeout must outlive the longest
task, so a SIGKILLed worker's reserved messages waited minutes. And BRPOP takes a message off
its queue before the consumer has recorded it anywhere: a consumer killed in between, or a reply
lost with the connection when Redis dies, loses the message.

Here (used by worker/transport/kombu_redis/channel.py; the scripts are in worker/store/lua/):

- **Reliable fetch.** A consumer takes a message with one Lua script (`broker_fetch.lua`) that
  pops it and, atomically, records it in kombu's unacked hash and index *and* under the
  consumer's holder id (`unacked_holders`: delivery tag -> holder), and refreshes the holder's
  heartbeat key. There is no moment when a popped message exists only in a socket. When
  every queue is empty the consumer waits with `BLMOVE q q RIGHT RIGHT` on one queue (a
  blocking wait that takes nothing), then fetches again; the queue it waits on rotates.
- **Heartbeat.** Each consumer keeps `unacked_alive:<holder>` alive (expiry `consumer_ttl`,
  `DELIVERY_CONSUMER_TTL_S`) from a thread every quarter of it. A fetch whose reply was lost
  (the connection broke) retires the holder id: its records are left to expire like a dead
  consumer's.
- **Restore.** Every live worker's restore cycle (every fifth of the TTL, one worker at a time
  under a mutex) puts back the messages of holders whose heartbeat expired, each with one Lua
  script (`broker_restore.lua`) that checks, atomically, that the holder is still silent and
  the message still unacked, then moves it to the front of its queue. A live consumer's
  messages are never put back; kombu's visibility timeout stays the fallback for messages
  without a holder record.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from worker.store.scripts import script

log = logging.getLogger("worker.transport.kombu_redis")

HOLDERS_KEY = "unacked_holders"
ALIVE_PREFIX = "unacked_alive:"
RESTORE_MUTEX = "unacked_holders_mutex"


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
    restore = script(client, "broker_restore")
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
        keys = {**channel.unacked_keys, "alive_key": ALIVE_PREFIX + holder, "queue_keys": queues}
        args = {"delivery_tag": tag, "entry": entry, "payload": json.dumps(payload)}
        restored += int(restore(keys, args)["restored"])
    if restored:
        log.warning("restored %d messages of consumers whose heartbeat expired", restored)
    return restored
