"""Fixtures shared by the suite: real Redis, the simulator, worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from b24sim import Simulator
from devtools import rabbitmq_local
from devtools.rabbitmq_local import LocalRabbitMQ
from devtools.redis_local import LocalRedis
from tests.harness import CLIENT_ID, CLIENT_SECRET, Fleet
from worker.settings import Settings


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis | None]:
    """A private redis-server for the whole run (TEST_REDIS_URL points at another one)."""
    if os.environ.get("TEST_REDIS_URL"):
        yield None
        return
    server = LocalRedis().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[LocalRabbitMQ | None]:
    """A private RabbitMQ node for the run (restartable); None when this machine has no
    rabbitmq-server (then `amqp_url` falls back to TEST_AMQP_URL or skips)."""
    if rabbitmq_local.server_binary() is None:
        yield None
        return
    node = LocalRabbitMQ().start()
    yield node
    node.close()


@pytest.fixture
def amqp_url(rabbitmq: LocalRabbitMQ | None) -> str:
    """An AMQP broker for one test, its `celery` and `flush` queues emptied."""
    url = rabbitmq.url if rabbitmq else os.environ.get("TEST_AMQP_URL", "")
    if not url:
        pytest.skip("RabbitMQ tests need rabbitmq-server on this machine or TEST_AMQP_URL")
    if not rabbitmq_local.answers(url):
        pytest.skip(f"no AMQP broker answers at {url.rsplit('@', 1)[-1]}")
    rabbitmq_local.purge(url, "celery", "flush")
    return url


@pytest.fixture
def redis_url(redis_server: LocalRedis | None) -> str:
    return os.environ.get("TEST_REDIS_URL") or (redis_server.url if redis_server else "")


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A client on a freshly emptied database: each test starts from nothing."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        flush_window_s=0.2,
        backoff_base_s=0.05,
        backoff_cap_s=0.5,
        max_attempts=4,
        sweep_interval_s=0.2,
        max_countdown_s=1.0,
        http_connect_timeout_s=1.0,
        http_read_timeout_s=2.0,
        lease_ttl_s=4.0,
        refresh_lock_ttl_s=3.0,
        oauth_timeout_s=2.0,
        allowed_endpoint_networks="public,loopback",
        oauth_hosts="127.0.0.1",
        rate_per_s=1000.0,
        rate_burst=1000,
        # the suite follows one group's flow; packing's own tests turn packing on
        packing="off",
    )


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=7, strict=True) as s:
        yield s


@pytest.fixture
def fleet(r: redis.Redis, redis_url: str, sim: Simulator, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(redis_url, sim, tmp_path)
    yield fleet
    fleet.stop()
