"""kombu's Redis transport, made to survive a Redis restart, and task events without secrets.

kombu 5.7's Redis channel keeps working on a connection that is already gone: after Redis
drops, acking a task that just finished, or closing the channel (which requeues the worker's
unacked messages), builds a new pool from `self.connection.client`, which is None by then. The
AttributeError that follows is not one of the transport's connection errors, so Celery calls it
unrecoverable and the worker exits instead of reconnecting (same failure class as
celery/kombu#582 and #970). Here that case raises redis' ConnectionError instead: Celery logs
the failed ack and reconnects; the messages stay in kombu's unacked hash and return after the
visibility timeout, and our tasks are safe to run twice.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Task
from celery.worker.request import Request
from kombu.transport import redis as kombu_redis

from worker.logs import redact


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except redis.ConnectionError:
            return None  # the unacked hash keeps them; the visibility timeout restores them


class Channel(kombu_redis.Channel):
    QoS = QoS

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


def broker_tls(url: str) -> dict[str, Any] | None:
    """Celery's `broker_use_ssl` for a `rediss://` broker URL, else None.

    Without it kombu connects to a `rediss://` broker with certificate checks off (it logs a
    warning and uses CERT_NONE). Here the certificate is required, as redis-py requires it for
    the state store's connection. `ssl_*` parameters in the URL (`ssl_ca_certs` for a private
    CA) replace these options; redis-py then still requires the certificate by default.
    """
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED} if urlsplit(url).scheme == "rediss" else None
