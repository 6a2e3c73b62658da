"""kombu's sentinel transport with the Redis transport's reconnect fixes
(worker/transport/kombu_redis/channel.py).

The Celery app maps `sentinel://` broker URLs here (worker/transport/celery_app.py); the
channel asks the sentinels for the current master whenever Celery reconnects it, so after a
failover the worker consumes from the promoted replica without a restart.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

from worker.transport.kombu_redis.channel import Channel as RedisChannel
from worker.transport.kombu_redis.channel import QoS


class SentinelChannel(RedisChannel, kombu_redis.SentinelChannel):
    """kombu's sentinel channel (master_name from the transport options) with the patch."""

    QoS = QoS
    # both parents' options: the sentinel ones (master_name, ...) and the fast recovery's
    from_transport_options = (
        *kombu_redis.SentinelChannel.from_transport_options,
        *(o for o in RedisChannel.from_transport_options if o == "consumer_ttl"),
    )


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
