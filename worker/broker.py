"""kombu's Redis transport, made to survive a Redis restart and to give a killed worker's
reserved messages back within seconds; and task events without secrets.

kombu 5.7's Redis channel keeps working on a connection that is already gone: after Redis
drops, acking a task that just finished, or closing the channel (which requeues the worker's
unacked messages), builds a new pool from `self.connection.client`, which is None by then. The
AttributeError that follows is not one of the transport's connection errors, so Celery calls it
unrecoverable and the worker exits instead of reconnecting (same failure class as
celery/kombu#582 and #970). Here that case raises redis' ConnectionError instead: Celery logs
the failed ack and reconnects; the messages stay in kombu's unacked hash and return after the
visibility timeout, and our tasks are safe to run twice.

Fast recovery (the holder records). kombu emulates acks on Redis: a delivered message is copied
to the `unacked` hash and goes back to its queue after `visibility_timeout`, whoever holds it.
That timeout must outlive the longest task, so a SIGKILLed worker's prefetched messages waited
minutes. Here each consumer channel also records, in the same MULTI as kombu's copy, which
consumer holds each message (`unacked_holders`: tag -> holder id) and keeps a heartbeat key
(`unacked_alive:<holder>`, expiry `consumer_ttl`) fresh from a thread every quarter of it. Every
live worker's restore cycle (under kombu's restore mutex) puts back the messages of holders whose
heartbeat expired, each with one Lua script that checks, atomically, that the holder is still
silent and the message still unacked before it moves it back to its queue. A live worker's
messages are never put back while its heartbeat thread runs; kombu's visibility timeout stays
the fallback for messages without a holder record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis
from celery import Task
from celery.worker.request import Request
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from worker.logs import redact

log = logging.getLogger("worker.broker")

HOLDERS_KEY = "unacked_holders"
ALIVE_PREFIX = "unacked_alive:"

#: put back one message of a silent holder, if it is still silent and the message still unacked
#: KEYS: 1 unacked index, 2 unacked, 3 holders, 4 the holder's heartbeat, 5.. target queues
#: ARGV: 1 delivery tag, 2 the unacked entry as read, 3 the payload to push (redelivered)
RESTORE_ORPHAN = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
for i = 5, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[3]) end
return 1
"""


class QoS(kombu_redis.QoS):
    channel: Channel

    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except redis.ConnectionError:
            return None  # the unacked hash keeps them; the visibility timeout restores them

    def append(self, message: Any, delivery_tag: Any) -> None:
        channel = self.channel
        if not channel.consumer_ttl:
            return super().append(message, delivery_tag)
        delivery = message.delivery_info
        entry = json.dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
            pipe.hset(self.unacked_key, delivery_tag, entry)
            pipe.hset(HOLDERS_KEY, delivery_tag, channel.holder)
            pipe.set(channel.alive_key, "1", px=int(channel.consumer_ttl * 1000))
            pipe.execute()
        virtual.QoS.append(self, message, delivery_tag)
        channel.start_heartbeat()

    def _remove_from_indices(self, delivery_tag: Any, pipe: Any = None) -> Any:
        with self.pipe_or_acquire(pipe) as pipe:
            removed = super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[misc]
            return removed.hdel(HOLDERS_KEY, delivery_tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        super().restore_visible(start, num, interval)  # kombu's visibility-timeout fallback
        count: int = self._vrestore_count  # type: ignore[attr-defined]
        if self.channel.consumer_ttl and (count - 1) % (interval or 1) == 0:
            with self.channel.conn_or_acquire() as client:
                try:
                    with kombu_redis.Mutex(client, HOLDERS_KEY + "_mutex", 60):
                        self.restore_orphans(client)
                except kombu_redis.MutexHeld:
                    pass

    def restore_orphans(self, client: Any) -> int:
        """Put back every message whose holder's heartbeat expired; returns how many."""
        holders = {
            tag: holder.decode() for tag, holder in (client.hgetall(HOLDERS_KEY) or {}).items()
        }
        if not holders:
            return 0
        distinct = sorted(set(holders.values()))
        alive = dict(zip(distinct, client.mget([ALIVE_PREFIX + h for h in distinct]), strict=True))
        orphans = [(tag, h) for tag, h in holders.items() if alive[h] is None]
        if not orphans:
            return 0
        entries = client.hmget(self.unacked_key, [tag for tag, _ in orphans])
        restore = client.register_script(RESTORE_ORPHAN)
        restored = 0
        for (tag, holder), entry in zip(orphans, entries, strict=True):
            if entry is None:  # acked meanwhile; only the holder record is left
                client.hdel(HOLDERS_KEY, tag)
                continue
            payload, exchange, routing_key = json.loads(entry)
            with contextlib.suppress(KeyError, TypeError):
                payload["headers"]["redelivered"] = True
                payload["properties"]["delivery_info"]["redelivered"] = True
            priority = self.channel._get_message_priority(payload, reverse=False)
            queues = [
                self.channel._q_for_pri(queue, priority)  # type: ignore[attr-defined]
                for queue in self.channel._lookup(exchange, routing_key)
            ]
            keys = [self.unacked_index_key, self.unacked_key, HOLDERS_KEY, ALIVE_PREFIX + holder]
            restored += int(restore(keys=[*keys, *queues], args=[tag, entry, json.dumps(payload)]))
        if restored:
            log.warning("restored %d messages of consumers whose heartbeat expired", restored)
        return restored


class Channel(kombu_redis.Channel):
    QoS = QoS
    #: seconds without a heartbeat after which a consumer's reserved messages go back (0: off)
    consumer_ttl: float = 0.0
    from_transport_options = (*kombu_redis.Channel.from_transport_options, "consumer_ttl")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._heartbeat: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def alive_key(self) -> str:
        return ALIVE_PREFIX + self.holder

    def start_heartbeat(self) -> None:
        """Keep this consumer's heartbeat key fresh from a thread (once; this process only)."""
        if self._heartbeat is not None and self._heartbeat.is_alive():
            return
        # the channel's own kind of pool: plain, or the sentinels' current master
        pool = self._get_pool()  # type: ignore[attr-defined]
        self._heartbeat = threading.Thread(
            target=self._beat, args=(pool,), name="b24d-broker-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def _beat(self, pool: redis.ConnectionPool) -> None:
        client = redis.Redis(connection_pool=pool)
        ttl_ms = int(self.consumer_ttl * 1000)
        while not self._stopped.wait(self.consumer_ttl / 4):
            try:
                client.set(self.alive_key, "1", px=ttl_ms)
            except redis.RedisError:
                continue  # Redis is restarting: the worker reconnects, the next beat lands
        with contextlib.suppress(redis.RedisError):
            client.delete(self.alive_key)
        pool.disconnect()

    def close(self) -> None:
        self._stopped.set()
        super().close()

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Transport(kombu_redis.Transport):
    Channel = Channel


class RedactedRequest(Request):
    """What the worker's task events (and so Flower) show of a task's arguments: masked."""

    @property
    def argsrepr(self) -> str:
        return repr(redact(list(self.args or ())))

    @property
    def kwargsrepr(self) -> str:
        return repr(redact(dict(self.kwargs or {})))


class RedactedTask(Task):  # type: ignore[type-arg]
    Request = "worker.broker:RedactedRequest"
