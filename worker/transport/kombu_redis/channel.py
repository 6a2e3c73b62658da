"""kombu's Redis transport, made to survive a Redis restart and to give a killed worker's
reserved messages back within seconds.

kombu 5.7's Redis channel keeps working on a connection that is already gone: after Redis
drops, acking a task that just finished, or closing the channel (which requeues the worker's
unacked messages), builds a new pool from `self.connection.client`, which is None by then. The
AttributeError that follows is not one of the transport's connection errors, so Celery calls it
unrecoverable and the worker exits instead of reconnecting (same failure class as
celery/kombu#582 and #970). Here that case raises redis' ConnectionError instead: Celery logs
the failed ack and reconnects; the messages stay in kombu's unacked hash and return when the
consumer's heartbeat expires (below), and our tasks are safe to run twice.

Fast recovery: a killed consumer's reserved messages go back within seconds, and no message
is lost between the pop and the record (worker/transport/kombu_redis/recovery.py explains how).

Queues consumed without acknowledgement (a remote-control reply queue: `b24-delivery health
worker`, `celery inspect`) are fetched with kombu's own BRPOP: nothing acks their messages, so
recording them would leave them in the unacked hash, and the restore would put them back once
the probe's process is gone.
"""

# The type stubs know kombu's Redis channel only by its public API; this module works on its
# internals (the BRPOP state machine, the unacked indices), so these two checks are off here.
# mypy: disable-error-code="attr-defined,misc"

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from functools import cache
from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from worker.store.scripts import Spec, spec
from worker.transport.kombu_redis.recovery import (
    ALIVE_PREFIX,
    HOLDERS_KEY,
    RESTORE_MUTEX,
    restore_orphans,
)

#: with every queue empty, block this long on one of them before fetching again
IDLE_WAIT_S = 0.25


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
        if delivery_tag in channel.recorded:  # the fetch script recorded it already
            channel.recorded.discard(delivery_tag)
        else:
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
            removed = super()._remove_from_indices(delivery_tag, pipe)
            return removed.hdel(HOLDERS_KEY, delivery_tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        super().restore_visible(start, num, interval)  # kombu's visibility-timeout fallback
        count: int = self._vrestore_count
        if self.channel.consumer_ttl and (count - 1) % (interval or 1) == 0:
            with self.channel.conn_or_acquire() as client:
                try:
                    with kombu_redis.Mutex(client, RESTORE_MUTEX, 60):
                        restore_orphans(self.channel, client)
                except kombu_redis.MutexHeld:
                    pass


@cache
def fetch_script() -> tuple[Spec, str]:
    """The reliable fetch (worker/store/lua/broker_fetch.lua) and its SHA1, for EVALSHA."""
    fetch = spec("broker_fetch")
    return fetch, hashlib.sha1(fetch.source.encode()).hexdigest()  # noqa: S324 - Redis' id


class Channel(kombu_redis.Channel):
    QoS = QoS
    #: seconds without a heartbeat after which a consumer's reserved messages go back (0: off,
    #: kombu's own BRPOP and visibility timeout)
    consumer_ttl: float = 0.0
    from_transport_options = (*kombu_redis.Channel.from_transport_options, "consumer_ttl")
    #: the client `_create_client` keeps for the channel's pool
    _sync_client: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holder = self._new_holder()
        self.recorded: set[str] = set()
        self._heartbeat: threading.Thread | None = None
        self._stopped = threading.Event()
        self._fetching: str | None = None  # the command in flight: FETCH or WAIT
        self._idle = False
        self._fetch_loaded = False  # FETCH is in this Redis' script cache (reset on NOSCRIPT)
        self._no_ack_queues: set[str] = set()

    @staticmethod
    def _new_holder() -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    @property
    def alive_key(self) -> str:
        return ALIVE_PREFIX + self.holder

    @property
    def unacked_keys(self) -> dict[str, str]:
        """The keys the fetch records a message under, by the scripts' names for them."""
        return {
            "unacked_index_key": self.unacked_index_key,
            "unacked_key": self.unacked_key,
            "holders_key": HOLDERS_KEY,
            "alive_key": self.alive_key,
        }

    # -- reliable fetch (replaces kombu's BRPOP) --

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _consumes_without_acks(self) -> bool:
        return not self._no_ack_queues.isdisjoint(self._active_queues)

    def _brpop_start(self, timeout: Any = None) -> None:
        if not self.consumer_ttl or self.global_keyprefix or self._consumes_without_acks():
            super()._brpop_start(timeout)  # no-ack queues: see the module's docstring
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = [self._q_for_pri(q, pri) for pri in self.priority_steps for q in queues]
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = time.monotonic()
        if self._idle:  # nothing anywhere: block on one queue without taking from it
            self._fetching = "WAIT"
            connection.send_command("BLMOVE", keys[0], keys[0], "RIGHT", "RIGHT", IDLE_WAIT_S)
        else:
            self._load_fetch()
            self._fetching = "FETCH"
            fetch, sha = fetch_script()
            ordered_keys, ordered_args = fetch.ordered(
                {**self.unacked_keys, "queue_keys": keys},
                {
                    "holder": self.holder,
                    "now": time.time(),
                    "heartbeat_ttl_ms": int(self.consumer_ttl * 1000),
                },
            )
            connection.send_command("EVALSHA", sha, len(ordered_keys), *ordered_keys, *ordered_args)
        return None

    def _load_fetch(self) -> None:
        """Put FETCH in Redis' script cache (once, and again after a restart emptied it)."""
        if not self._fetch_loaded:
            with self.conn_or_acquire() as client:
                client.script_load(fetch_script()[0].source)
            self._fetch_loaded = True

    def _brpop_read(self, **options: Any) -> Any:
        fetching, self._fetching = self._fetching, None
        if fetching is None:
            return super()._brpop_read(**options)
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVALSHA", **options)
            except redis.exceptions.NoScriptError:
                self._fetch_loaded = False  # Redis restarted: load it again, then fetch
                raise Empty() from None
            except self.connection_errors:
                self.client.connection.disconnect()
                if fetching == "FETCH":
                    self._reply_lost()
                raise
            fetched = json.loads(bytes_to_str(reply)) if fetching == "FETCH" else {}
            if not fetched:
                if fetching == "FETCH":  # wait on the next queue of the cycle
                    self._queue_cycle.rotate(self._queue_cycle.consume(1)[0])
                self._idle = fetching == "FETCH"
                raise Empty()
            self._idle = False
            queue = fetched["queue"].rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            payload = loads(fetched["message"])
            tag = (payload.get("properties") or {}).get("delivery_tag")
            if tag:
                self.recorded.add(tag)
            self.connection._deliver(payload, queue)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _on_connection_disconnect(self, connection: Any) -> None:
        if self._in_poll is connection and self._fetching == "FETCH":
            self._fetching = None
            self._reply_lost()
        super()._on_connection_disconnect(connection)

    def _reply_lost(self) -> None:
        """A fetch's reply died with the connection: the message it took is recorded under
        this holder id but never arrived. Retire the id; its records expire like a dead
        consumer's and go back (with the messages still running here, as on any broker when
        a connection drops)."""
        self.holder = self._new_holder()

    # -- heartbeat --

    def start_heartbeat(self) -> None:
        """Keep this consumer's heartbeat key fresh from a thread (once; this process only)."""
        if self._heartbeat is not None and self._heartbeat.is_alive():
            return
        # the channel's own kind of pool: plain, or the sentinels' current master
        pool = self._get_pool()
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

    def _create_client(self, asynchronous: bool = False) -> Any:
        """kombu builds a new redis client for every publish and every ack
        (`conn_or_acquire`); a client is a thin wrapper of the channel's pool, but building one
        (redis-py fills its response-callback table) cost more CPU than the command it sent
        (docs/benchmarks.md). One per pool is kept; a new pool (a reconnect) gets a new one."""
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._sync_client
        if client is None or client.connection_pool is not pool:
            client = self._sync_client = super()._create_client()
        return client

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
