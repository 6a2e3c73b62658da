"""The fleet-wide leaky bucket (worker/lua/limiter.lua) on a real Redis, on its own."""

from __future__ import annotations

import redis

from worker.scripts import script


def test_burst_then_reserved_slots_at_the_drain_rate(r: redis.Redis) -> None:
    take = script(r, "take_slot")
    rate, burst, horizon = 2.0, 5, 60.0
    answers = [take(keys=["bucket"], args=[rate, burst, horizon]) for _ in range(8)]
    assert answers[:5] == [[0, 0]] * 5, "the burst is taken at once"
    waits = [wait for wait, reserved in answers[5:] if reserved == 1]
    assert len(waits) == 3, "later callers reserve a future slot each"
    # one slot per 1/rate = 500 ms, counted from the full bucket (a little drained meanwhile)
    for n, wait in enumerate(waits, start=1):
        assert 500 * n - 100 <= wait <= 500 * n


def test_waits_beyond_the_horizon_are_not_reserved(r: redis.Redis) -> None:
    take = script(r, "take_slot")
    for _ in range(3):
        take(keys=["bucket"], args=[1.0, 3, 0.5])
    wait, reserved = take(keys=["bucket"], args=[1.0, 3, 0.5])
    assert reserved == 0 and 900 <= wait <= 1000
    level_before = float(r.hget("bucket", "level") or 0)
    take(keys=["bucket"], args=[1.0, 3, 0.5])
    assert float(r.hget("bucket", "level") or 0) <= level_before, "an unreserved wait costs nothing"
