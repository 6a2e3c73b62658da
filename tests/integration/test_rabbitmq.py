"""RabbitMQ as the broker (CELERY_BROKER_URL=amqp://...), Redis as the state store: a round trip,
countdown triggers through the broker's delayed delivery, and the queues as declared: `celery`
a classic durable queue (what every Celery producer declares), `flush` a durable quorum queue."""

from __future__ import annotations

import amqp
import pytest
import redis
from celery import Celery
from kombu import Connection

from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, confirmation, delivered_ids, producer, stats, wait_for


def test_a_round_trip_through_rabbitmq(
    fleet: Fleet, sim: Simulator, amqp_url: str, r: redis.Redis
) -> None:
    fleet.env["CELERY_BROKER_URL"] = amqp_url
    worker = fleet.start(concurrency=2, beat=True)
    p = producer(amqp_url)  # publisher confirms: each call returns once the broker has it
    p.register_portal(**sim.add_portal(PortalConfig(member_id="rmq")).as_register_kwargs())
    for i in range(1, 31):  # partial batches: their flush waits for the window (a countdown)
        p.confirm(**confirmation("rmq", i, line=1 + i % 3))
    p.close()
    wait_for(lambda: stats(r).get("delivered") == 30, 30, what="30 delivered")
    assert sorted(delivered_ids(sim, "rmq")) == list(range(1, 31))
    assert "Global QoS is disabled" in worker.log(), "quorum queue detected"


def test_celery_is_classic_and_flush_is_quorum(fleet: Fleet, amqp_url: str) -> None:
    fleet.env["CELERY_BROKER_URL"] = amqp_url
    fleet.start(concurrency=1, beat=False)
    # a default Celery producer declares `celery` as a plain durable queue: accepted
    plain = Celery("any-producer", broker=amqp_url, set_as_current=False)
    plain.conf.broker_connection_retry = False
    try:
        plain.send_task("delivery.confirm", kwargs={"portal": "x"}, retry=False)
    finally:
        plain.close()
    # declaring `flush` as a classic queue contradicts its x-queue-type: quorum
    with (
        Connection(amqp_url) as conn,
        conn.channel() as channel,
        pytest.raises(amqp.exceptions.PreconditionFailed, match="x-queue-type"),
    ):
        channel.queue_declare("flush", durable=True, auto_delete=False)
