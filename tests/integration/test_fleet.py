"""Fleet-wide properties: one rate budget per portal, no loss on SIGKILL, bad input isolated,
and a slow or parked portal never delays another."""

from __future__ import annotations

import json

import redis

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import Fleet, confirmation, delivered_ids, producer, stats, wait_for
from worker.store.keys import Group, Keys


def test_four_workers_drain_a_backlog_at_the_documented_rate_without_503(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    # the simulator enforces the documented bucket; the fleet runs on its default-like budget
    env = {
        "DELIVERY_RATE_PER_S": "2",
        "DELIVERY_RATE_BURST": "45",
        "DELIVERY_BATCH_SIZE": "5",
        "DELIVERY_FLUSH_WINDOW_S": "1.0",
    }
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="p1")).as_register_kwargs())
    total = 300  # 60 calls: the 45 of the burst, then 15 more at 2/s
    for i in range(total):
        p.confirm(**confirmation("p1", 10_000 + i, line=1 + i % 12))
    for i in range(4):
        fleet.start(concurrency=1, beat=i == 0, **env)
    wait_for(lambda: stats(r).get("delivered") == total, timeout_s=60, what="the backlog")
    counters = sim.counters("p1")
    print(
        f"\ncalls={counters['calls']} 503s={counters['rate_limited_503']} "
        f"rate_waits={stats(r).get('rate_waits', 0)}"
    )
    assert counters["rate_limited_503"] == 0
    assert sorted(set(delivered_ids(sim))) == list(range(10_000, 10_000 + total))


def test_a_worker_killed_mid_flush_loses_nothing(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="p1")).as_register_kwargs())
    victim = fleet.start(concurrency=2, beat=False)
    sim.inject(Fault(kind="latency", latency_s=1.5, portal="p1"))
    for i in range(30):
        p.confirm(**confirmation("p1", 1 + i, line=1 + i % 3))
    group = Group("p1", "myconnector", 1)
    wait_for(lambda: r.exists(Keys().lease(group)), what="a flush in flight")
    victim.kill()
    assert r.zcard(Keys().leased(group)) > 0, "killed while holding a lease"
    sim.clear_faults()
    fleet.start(concurrency=2, beat=True)
    groups = [Group("p1", "myconnector", line) for line in (1, 2, 3)]
    # reserved-but-unacked confirm tasks come back after the visibility timeout (8 s here)
    wait_for(
        lambda: stats(r).get("ingested") == 30 and not any(r.hlen(Keys().items(g)) for g in groups),
        timeout_s=45,
        what="every confirmation ingested and the buffer empty",
    )
    assert set(delivered_ids(sim)) == set(range(1, 31))
    duplicates = len(delivered_ids(sim)) - 30
    print(f"\ndelivered=30 lost=0 duplicates={duplicates} stats={stats(r)}")
    assert stats(r).get("leases_expired", 0) >= 1


def test_invalid_confirmations_are_rejected_and_valid_ones_in_the_group_delivered(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start()
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="p1")).as_register_kwargs())
    p.confirm(**confirmation("p1", 1))
    p.app.send_task("delivery.confirm", kwargs={**confirmation("p1", 2), "line": -1})
    p.app.send_task("delivery.confirm", kwargs=confirmation("p1", 3, message={"id": [1, 2]}))
    p.app.send_task(
        "delivery.confirm", kwargs={"portal": "p1", "connector": "myconnector", "line": 107}
    )
    p.confirm(**confirmation("p1", 4))
    wait_for(
        lambda: stats(r).get("delivered") == 2 and stats(r).get("rejected") == 3,
        what="2 delivered, 3 rejected",
    )
    assert sorted(delivered_ids(sim)) == [1, 4]
    errors = sorted(json.loads(x)["error"] for x in r.lrange(Keys().rejected, 0, -1))
    assert errors == [
        "im is required",
        "line must be a positive integer",
        "message.id must be a non-empty array of at most 100 non-empty strings",
    ]


def test_a_slow_portal_does_not_delay_a_healthy_one(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start(concurrency=4, DELIVERY_PORTAL_MAX_INFLIGHT="1")
    p = producer(redis_url)
    for member_id in ("slow", "fast"):
        p.register_portal(**sim.add_portal(PortalConfig(member_id=member_id)).as_register_kwargs())
    sim.inject(Fault(kind="latency", latency_s=1.8, portal="slow"))
    for i in range(40):
        p.confirm(**confirmation("slow", i + 1, line=1 + i % 8))
    for i in range(40):
        p.confirm(**confirmation("fast", i + 1, line=1 + i % 8))
    # the slow portal holds at most one worker slot; the fast one's 8 groups flow meanwhile
    wait_for(lambda: len(delivered_ids(sim, "fast")) == 40, timeout_s=10, what="the fast portal")
    assert len(delivered_ids(sim, "slow")) < 40
    sim.clear_faults()
    wait_for(lambda: len(delivered_ids(sim, "slow")) == 40, timeout_s=30, what="the slow portal")
