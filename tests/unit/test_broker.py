"""The transport patch: a channel whose connection is gone raises a connection error (which
Celery recovers from) instead of AttributeError (which made the worker exit)."""

from __future__ import annotations

import pytest
import redis

from worker.broker import Channel, Transport
from worker.broker import QoS as PatchedQoS


def test_the_app_uses_the_patched_transport_for_redis_urls() -> None:
    from worker import app

    with app.connection_for_write() as connection:
        assert connection.transport_cls == "redis"
        assert isinstance(connection.transport, Transport)
        assert connection.as_uri().startswith("redis://")


def test_a_channel_without_its_connection_raises_a_connection_error() -> None:
    channel = Channel.__new__(Channel)
    channel.connection = None
    with pytest.raises(redis.ConnectionError):
        channel._connparams()


def test_restoring_unacked_messages_without_a_connection_is_skipped() -> None:
    channel = Channel.__new__(Channel)
    channel.connection = None
    qos = PatchedQoS.__new__(PatchedQoS)
    qos.channel = channel
    qos._delivered = {"tag": object()}
    assert qos.restore_unacked() is None
