"""A confirmation goes producer -> Redis -> real worker -> simulator, batched per group."""

from __future__ import annotations

import redis

from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, confirmation, delivered_ids, producer, stats, wait_for


def test_confirmations_reach_the_portal_in_one_batch(
    fleet: Fleet, sim: Simulator, r: redis.Redis, redis_url: str
) -> None:
    creds = sim.add_portal(PortalConfig(member_id="p1"))
    fleet.start()
    p = producer(redis_url)
    p.register_portal(**creds.as_register_kwargs())
    for i in range(10):
        p.confirm(**confirmation("p1", 1000 + i))
    wait_for(lambda: len(delivered_ids(sim)) >= 10, what="10 deliveries")
    assert sorted(delivered_ids(sim)) == list(range(1000, 1010))
    calls = {a.call_id for a in sim.accepted()}
    assert len(calls) == 1, "ten confirmations within one window make one call"
    wait_for(lambda: stats(r).get("delivered") == 10, what="delivered counter")
    p.close()
