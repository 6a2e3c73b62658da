"""The budget share: while a portal's batches are not full, the fleet spends at most
DELIVERY_PORTAL_BUDGET_SHARE of the portal's sustained rate on it (counted over
DELIVERY_PORTAL_BUDGET_WINDOW_S, on Redis server time, in `begin.lua`); a flush that carries a
full batch still goes at the permitted rate. Partial calls are spaced (the window over the calls
it allows), so a confirmation waits at most that long for its share. Time is shrunk: 10 calls/s,
a quarter, a 2 s window (at most 5 partial calls in any 2 s, 0.4 s apart, as the defaults allow
5 in any 10 s, 2 s apart, at 2/s).

Platform fact behind it: the portal's leaky bucket (2/s sustained) is shared with the
connector's own calls, which need most of it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import redis

from b24sim import Simulator
from tests.harness import stats, wait_for
from tests.inprocess.conftest import GROUP, fill, register
from worker.flush.flow import Flushed, flush
from worker.runtime import Runtime

WINDOW_S = 2.0
#: batches of five, a 1 ms window, 10 calls/s with a burst of 40, a quarter of it for partial calls
SHRUNK: dict[str, Any] = {
    "batch_size": 5,
    "flush_window_s": 0.001,
    "rate_per_s": 10.0,
    "rate_burst": 40,
    "portal_budget_share": 0.25,
}
#: what this loaded machine may add between a flush's begin and its call's arrival
SLACK_S = 0.25


def _call_times(sim: Simulator) -> list[float]:
    first: dict[int, float] = {}
    for a in sim.accepted(GROUP.portal):
        first[a.call_id] = min(first.get(a.call_id, a.arrived_at), a.arrived_at)
    return sorted(first.values())


def test_partial_batches_spend_only_the_share_and_a_full_batch_goes_past_it(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(**SHRUNK, portal_budget_window_s=WINDOW_S)
    register(rt, sim)
    limit = 5  # 0.25 x 10/s x 2 s

    def past_the_window() -> Flushed:  # (the 1 ms window of a lone item)
        return wait_for(lambda: (f := flush(rt, GROUP, "t")) is not Flushed.WAIT and f)

    spacing = WINDOW_S / limit  # 0.4 s
    fill(rt, 1, first=1)
    assert past_the_window() == "delivered"
    fill(rt, 1, first=2)
    assert past_the_window() == "throttled", "the next partial call waits for its spacing"
    assert stats(r)["share_waits"] == 1
    fill(rt, 4, first=3)  # now a full batch of five (with the one that waited)
    assert flush(rt, GROUP, "t") == "delivered", "a full batch goes at the permitted rate"
    for i in range(200, 200 + limit + 2):  # partial again: one by one, as the share allows
        fill(rt, 1, first=i)
        wait_for(lambda: flush(rt, GROUP, "t") == "delivered", 3 * WINDOW_S, what="a slot")
    times = _call_times(sim)
    assert len(times) == 2 + limit + 2
    partial = times[:1] + times[2:]  # (the full batch is not counted in the share)
    for a, b in pairwise(partial):
        assert b - a >= spacing - SLACK_S, f"partial calls {b - a:.2f} s apart"
        assert b - a <= spacing + 1.0, f"a partial call waited {b - a:.2f} s, past its spacing"
    for k in range(len(partial) - limit):
        span = partial[k + limit] - partial[k]
        assert span >= WINDOW_S - SLACK_S, f"{limit + 1} partial calls within {span:.2f} s"
    assert stats(r)["delivered"] == 1 + 5 + limit + 2


def test_the_tail_of_a_busy_spell_is_not_held_back_by_its_full_calls(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    """Full batches go at the permitted rate and are not counted in the share: the partial
    batch they leave behind goes at once, not a window later."""
    # a partial call held back would wait a minute
    rt = make_rt(**SHRUNK, portal_budget_window_s=60.0)
    register(rt, sim)
    for i in range(8):  # more full calls than the share's five
        fill(rt, 5, first=1 + 5 * i)
        assert flush(rt, GROUP, "t") == "delivered"
    fill(rt, 2, first=100)
    wait_for(lambda: (f := flush(rt, GROUP, "t")) is not Flushed.WAIT and f)
    assert stats(r)["delivered"] == 42 and stats(r).get("share_waits", 0) == 0
