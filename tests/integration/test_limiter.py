"""The fleet-wide leaky bucket (worker/store/lua/limiter.lua) on a real Redis, on its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis

from worker.store.scripts import Bound, spec_from_file

TAKE_SLOT = Path(__file__).resolve().parent.parent / "lua" / "take_slot.lua"


def _take(r: redis.Redis) -> Callable[[float, int, float], tuple[int, int]]:
    script = Bound(r, spec_from_file(TAKE_SLOT))

    def take(rate_per_s: float, burst: int, horizon_s: float) -> tuple[int, int]:
        reply = script(
            {"bucket_key": "bucket"},
            {"rate_per_s": rate_per_s, "burst": burst, "horizon_s": horizon_s},
        )
        return reply["wait_ms"], reply["reserved"]

    return take


def test_burst_then_reserved_slots_at_the_drain_rate(r: redis.Redis) -> None:
    take = _take(r)
    rate, burst, horizon = 2.0, 5, 60.0
    answers = [take(rate, burst, horizon) for _ in range(8)]
    assert answers[:5] == [(0, 0)] * 5, "the burst is taken at once"
    waits = [wait for wait, reserved in answers[5:] if reserved == 1]
    assert len(waits) == 3, "later callers reserve a future slot each"
    # one slot per 1/rate = 500 ms, counted from the full bucket (a little drained meanwhile)
    for n, wait in enumerate(waits, start=1):
        assert 500 * n - 100 <= wait <= 500 * n


def test_waits_beyond_the_horizon_are_not_reserved(r: redis.Redis) -> None:
    take = _take(r)
    for _ in range(3):
        take(1.0, 3, 0.5)
    wait, reserved = take(1.0, 3, 0.5)
    assert reserved == 0 and 900 <= wait <= 1000
    level_before = float(r.hget("bucket", "level") or 0)
    take(1.0, 3, 0.5)
    assert float(r.hget("bucket", "level") or 0) <= level_before, "an unreserved wait costs nothing"
