"""The retry policy with real worker processes, where concurrency is the subject: four workers
meeting one expired token refresh it once. Each policy row on its own is tested in-process
(tests/inprocess/test_flush.py)."""

from __future__ import annotations

import redis

from b24producer import Producer
from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, confirmation, producer, stats, wait_for
from worker.store.keys import Keys


def _start(
    fleet: Fleet,
    sim: Simulator,
    redis_url: str,
    *configs: PortalConfig,
    workers: int = 1,
    concurrency: int = 2,
    **env: str,
) -> Producer:
    for i in range(workers):
        fleet.start(concurrency=concurrency, beat=i == 0, **env)
    p = producer(redis_url)
    configs = configs or (PortalConfig(member_id="p1"),)
    for config in configs:
        p.register_portal(**sim.add_portal(config).as_register_kwargs())
    r = redis.Redis.from_url(redis_url)
    for config in configs:  # portal.register is a task too: wait until it has run
        wait_for(lambda c=config: r.exists(Keys().portal(c.member_id)), what="registration")
    r.close()
    return p


def test_four_workers_hitting_expired_token_refresh_once(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(
        fleet,
        sim,
        redis_url,
        PortalConfig(member_id="p1", refresh_latency_s=0.3),
        workers=4,
        concurrency=1,
        DELIVERY_BATCH_SIZE="1",
    )
    sim.expire_tokens("p1")
    for line in range(1, 9):
        p.confirm(**confirmation("p1", line, line=line))
    wait_for(lambda: stats(r).get("delivered") == 8, what="8 deliveries")
    # the flushes that began while the refresh was under way waited instead of calling
    assert 1 <= sim.counters("p1")["expired_token_401"] <= 4, "at most one per process"
    assert sim.counters("p1")["refreshes"] == 1
    assert sim.counters("p1")["refresh_failures"] == 0
