"""The Celery settings that depend on the broker: queues, transport options, heartbeats.

`CELERY_BROKER_URL` picks the broker; `REDIS_URL` stays the state store (and the broker when
`CELERY_BROKER_URL` is unset). Each broker is configured for the same promise: a confirmation the
producer saw accepted is ingested, and a killed worker's reserved messages run again within
seconds, never while the worker that holds them is alive.
"""

from __future__ import annotations

import math
import ssl
from typing import Any
from urllib.parse import urlsplit

from kombu import Exchange, Queue

from worker.names import FLUSH_QUEUE, INGEST_QUEUE
from worker.settings import Settings
from worker.transport.sentinel import transport_options as sentinel_transport_options

#: RabbitMQ: a flush trigger redelivered this often is dropped (a poison message); the
#: buffer keeps its items and the sweep triggers the group again
FLUSH_DELIVERY_LIMIT = 20


def broker_redis_conf(settings: Settings) -> dict[str, Any]:
    """kombu's Redis transport (patched in worker/transport/kombu_redis/) with fast recovery."""
    return {
        "task_queues": (Queue(INGEST_QUEUE), Queue(FLUSH_QUEUE)),
        "broker_transport_options": {
            # Each consumer's reserved messages carry its id; a consumer whose heartbeat key
            # is older than consumer_ttl is dead and its messages go back
            # (worker/transport/kombu_redis/recovery.py).
            "consumer_ttl": settings.consumer_ttl_s,
            # Look for them every fifth of that.
            "unacked_restore_interval": max(1, int(settings.consumer_ttl_s / 5)),
            "unacked_restore_throttle": 1,
            # The fallback for messages without a live-holder record (written by other
            # clients): kombu's own redelivery after this long. Settings validation keeps it
            # above a task's time limit + the longest countdown, so a running task or one
            # waiting for its countdown is never delivered twice.
            "visibility_timeout": settings.visibility_timeout_s,
            # Redis round trips are short; fail over quickly instead of hanging a task.
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "health_check_interval": 30,
            # sentinel:// (with REDIS_SENTINEL_MASTER): the monitored master's name
            **sentinel_transport_options(settings.broker, settings.redis_sentinel_master),
        },
    }


def broker_amqp_conf(settings: Settings) -> dict[str, Any]:
    """RabbitMQ as its careful users run it with Celery 5.7.

    - `celery` stays a classic durable queue: every Celery producer declares it so, and a
      quorum `celery` would make their declarations fail with PRECONDITION_FAILED.
    - `flush` is a durable quorum queue (replicated on a cluster). Its exchange is a topic
      exchange so that Celery's native delayed delivery can route countdowns to it: with a
      quorum queue declared, Celery sends countdown tasks through the broker's
      `celery_delayed_*` queues (whole seconds, see `countdown_s`) instead of holding them
      unacked in the worker, and turns global QoS off (`worker_detect_quorum_queues`).
    - Persistent messages (Celery's default delivery mode) and publisher confirms: a
      publish returns once the broker has the message.
    - Late acks (the app's `task_acks_late`): a killed worker's unacked messages go back to
      the queue as soon as its connection drops. The broker's `consumer_timeout` (30 min by
      default) is far above what we hold a message (a task's time limit; countdowns stay in
      the broker).
    """
    return {
        "task_queues": (
            Queue(INGEST_QUEUE, durable=True),
            Queue(
                FLUSH_QUEUE,
                Exchange(FLUSH_QUEUE, type="topic", durable=True),
                routing_key=FLUSH_QUEUE,
                durable=True,
                queue_arguments={
                    "x-queue-type": "quorum",
                    "x-delivery-limit": FLUSH_DELIVERY_LIMIT,
                },
            ),
        ),
        "task_default_delivery_mode": "persistent",
        "broker_transport_options": {"confirm_publish": True},
        "worker_detect_quorum_queues": True,
        # A host that vanishes (no TCP reset) is noticed within two beats.
        "broker_heartbeat": 10,
    }


def countdown_s(settings: Settings, delay_s: float) -> float | None:
    """The countdown to give Celery for a wait of `delay_s` (None: none).

    RabbitMQ's native delayed delivery counts whole seconds (a sub-second countdown cannot be
    routed), so waits are rounded up there; a trigger that fires late is harmless, one that
    fires early finds the group not ready and reschedules.
    """
    if delay_s <= 0:
        return None
    return float(math.ceil(delay_s)) if settings.broker_is_amqp else delay_s


def broker_tls(url: str) -> dict[str, Any] | None:
    """Celery's `broker_use_ssl` for a `rediss://` broker URL, else None.

    Without it kombu connects to a `rediss://` broker with certificate checks off (it logs a
    warning and uses CERT_NONE). Here the certificate is required, as redis-py requires it for
    the state store's connection. `ssl_*` parameters in the URL (`ssl_ca_certs` for a private
    CA) replace these options; redis-py then still requires the certificate by default.
    """
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED} if urlsplit(url).scheme == "rediss" else None
