"""kombu's Redis transport, made to survive a Redis restart, and task events without secrets.

kombu 5.7's Redis channel, closed after the connection was lost, tries to requeue the worker's
unacked messages through a connection that no longer exists: `restore_unacked` raises
AttributeError (`self.connection.client` is None), Celery takes that for an unrecoverable error,
and the worker exits instead of reconnecting. Those messages are safe in kombu's unacked hash and
come back after the visibility timeout, so skipping the restore is correct. (Same failure class
as celery/kombu#582 and #970.)
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from celery.worker.request import Request
from kombu.transport import redis as kombu_redis

from worker.logs import redact

log = structlog.stdlib.get_logger("worker.broker")


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except AttributeError:
            log.warning(
                "broker connection lost: unacked messages return after the visibility timeout"
            )
            return None


class Channel(kombu_redis.Channel):
    QoS = QoS


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
