"""The transport patch: a channel whose connection is gone raises a connection error (which
Celery recovers from) instead of AttributeError (which made the worker exit)."""

from __future__ import annotations

import ssl

import pytest
import redis

from worker.transport.config import broker_tls
from worker.transport.kombu_redis.channel import Channel, Transport
from worker.transport.kombu_redis.channel import QoS as PatchedQoS


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


def test_broker_conf_per_broker() -> None:
    from worker.settings import Settings
    from worker.transport.config import broker_amqp_conf, broker_redis_conf, countdown_s

    redis_settings = Settings()
    amqp_settings = Settings(broker_url="amqp://guest:guest@127.0.0.1:5672//")
    celery, flush = broker_amqp_conf(amqp_settings)["task_queues"]
    assert celery.name == "celery" and celery.durable and not celery.queue_arguments
    assert flush.queue_arguments["x-queue-type"] == "quorum" and flush.exchange.type == "topic"
    assert broker_amqp_conf(amqp_settings)["broker_transport_options"]["confirm_publish"]
    options = broker_redis_conf(redis_settings)["broker_transport_options"]
    assert options["consumer_ttl"] == 10.0 and options["unacked_restore_interval"] == 2
    assert "consumer_ttl" in Channel.from_transport_options
    # native delayed delivery counts whole seconds; Redis keeps the exact wait
    assert countdown_s(amqp_settings, 0.3) == 1.0 and countdown_s(amqp_settings, 2.0) == 2.0
    assert countdown_s(redis_settings, 0.3) == 0.3 and countdown_s(redis_settings, 0) is None


def test_a_rediss_broker_verifies_the_server_certificate() -> None:
    """kombu alone would connect to a rediss:// broker with CERT_NONE."""
    assert broker_tls("redis://:pw@127.0.0.1:6379/0") is None
    assert broker_tls("rediss://:pw@redis.internal:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    from worker.settings import Settings
    from worker.transport.celery_app import create_app

    app = create_app(Settings(redis_url="rediss://:pw@127.0.0.1:1/0"))
    with app.connection_for_write() as connection:  # no network: the options only
        assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
