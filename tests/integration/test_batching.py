"""Batches form per group in Redis, respect the size and the window, and coalesce repeats."""

from __future__ import annotations

from collections import Counter

import redis

from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, confirmation, delivered_ids, producer, stats, wait_for


def _setup(
    fleet: Fleet, sim: Simulator, redis_url: str, portals: tuple[str, ...] = ("p1",), **env: str
):  # type: ignore[no-untyped-def]
    fleet.start(**env)
    p = producer(redis_url)
    for member_id in portals:
        p.register_portal(**sim.add_portal(PortalConfig(member_id=member_id)).as_register_kwargs())
    return p


def test_batches_respect_size_and_group(fleet: Fleet, sim: Simulator, redis_url: str) -> None:
    p = _setup(fleet, sim, redis_url, DELIVERY_BATCH_SIZE="5", DELIVERY_FLUSH_WINDOW_S="0.3")
    for i in range(12):
        p.confirm(**confirmation("p1", 100 + i, line=1))
    for i in range(3):
        p.confirm(**confirmation("p1", 200 + i, line=2))
    wait_for(lambda: len(sim.accepted()) >= 15, what="15 deliveries")
    calls: dict[int, list[tuple[str, int]]] = {}
    for a in sim.accepted():
        calls.setdefault(a.call_id, []).append((a.connector, int(a.line)))
    assert all(len(set(groups)) == 1 for groups in calls.values()), "one group per call"
    sizes = Counter(len(c) for c in calls.values())
    assert max(sizes) <= 5
    assert sorted(len(c) for c in calls.values() if c[0][1] == 1) == [2, 5, 5]
    assert sorted(delivered_ids(sim)) == [*range(100, 112), *range(200, 203)]
    p.close()


def test_a_partial_batch_waits_for_the_window_then_goes(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    p = _setup(fleet, sim, redis_url, DELIVERY_FLUSH_WINDOW_S="1.0")
    first = sim.accepted()
    assert not first
    import time

    sent_at = time.time()
    p.confirm(**confirmation("p1", 1))
    p.confirm(**confirmation("p1", 2))
    wait_for(lambda: len(sim.accepted()) == 2, what="the partial batch")
    arrived = [a.arrived_at for a in sim.accepted()]
    assert len({a.call_id for a in sim.accepted()}) == 1, "both in one call"
    assert min(arrived) - sent_at >= 0.9, "held for the window to gather more"
    assert max(arrived) - sent_at < 4.0, "and not held much longer than the window"
    p.close()


def test_repeats_of_a_pending_message_are_coalesced(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _setup(fleet, sim, redis_url, DELIVERY_FLUSH_WINDOW_S="1.0")
    for _ in range(5):
        p.confirm(**confirmation("p1", 777))
    p.confirm(**confirmation("p1", 778))
    wait_for(lambda: stats(r).get("delivered") == 2, what="two delivered")
    assert sorted(delivered_ids(sim)) == [777, 778]
    assert stats(r)["coalesced"] == 4
    p.close()


def test_a_full_batch_does_not_wait_for_the_window(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    p = _setup(fleet, sim, redis_url, DELIVERY_BATCH_SIZE="10", DELIVERY_FLUSH_WINDOW_S="30")
    for i in range(10):
        p.confirm(**confirmation("p1", 500 + i))
    wait_for(
        lambda: len(sim.accepted()) == 10, timeout_s=15, what="the full batch, long before 30 s"
    )
    p.close()
