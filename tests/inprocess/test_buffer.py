"""Ingest, coalesce, trigger, lease, lease expiry, the limiter's reserved slots, the sweep and
parking, each a script call on the real Redis (docs/design.md draws the states)."""

from __future__ import annotations

from collections.abc import Callable

import redis

from b24sim import Simulator
from tests.harness import stats, wait_for
from tests.inprocess.conftest import GROUP, SentTasks, element, fill, register
from worker.flush.policy import Action
from worker.names import FLUSH_QUEUE, FLUSH_TASK
from worker.runtime import Runtime
from worker.store.keys import Group, Keys

KEYS = Keys()


def test_ingest_claims_one_trigger_and_coalesces_repeats(
    make_rt: Callable[..., Runtime], r: redis.Redis, sent: SentTasks
) -> None:
    rt = make_rt(flush_tick_s=0)  # a task of the group's own (ticks: tests/inprocess/test_ticks.py)
    first = rt.buffer.ingest(GROUP, "1", element(1))
    assert first.added and first.trigger.send
    window = rt.settings.flush_window_s
    assert first.trigger.delay_s is not None
    assert window <= first.trigger.delay_s <= window + 0.001, "a lone item waits the window"
    rt.send_flush(GROUP, first.trigger)
    assert sent.calls[0].name == FLUSH_TASK and sent.calls[0].queue == FLUSH_QUEUE
    assert sent.calls[0].kwargs == {"group": GROUP.id}
    assert sent.calls[0].task_id == first.trigger.task_id

    again = rt.buffer.ingest(GROUP, "1", element(1))
    assert not again.added and not again.trigger.send, "a pending message id is coalesced"
    second = rt.buffer.ingest(GROUP, "2", element(2))
    assert second.added and not second.trigger.send, "one trigger per group is enough"
    assert stats(r)["ingested"] == 2 and stats(r)["coalesced"] == 1 and stats(r)["pending"] == 2
    assert r.zscore(KEYS.due, GROUP.id) is not None, "the sweep knows when the group is due"


def test_a_full_batch_claims_an_earlier_trigger(make_rt: Callable[..., Runtime]) -> None:
    rt = make_rt(batch_size=3)
    fill(rt, 2)
    full = rt.buffer.ingest(GROUP, "3", element(3))
    assert full.trigger.send and full.trigger.delay_s == 0, "a full batch flushes at once"


def test_begin_waits_for_the_window_then_leases_the_oldest_items(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=2)
    register(rt, sim)
    rt.buffer.ingest(GROUP, "1", element(1))
    early = rt.buffer.begin(GROUP, "own")
    assert early.kind == "wait" and early.lease is None and early.trigger is not None
    fill(rt, 2, first=2)
    begin = rt.buffer.begin(GROUP, "own")
    assert begin.kind == "leased" and begin.lease is not None
    assert begin.lease.ids == ["1", "2"], "oldest first, one batch"
    assert begin.lease.elements == [element(1), element(2)]
    assert r.zcard(KEYS.queue(GROUP)) == 1 and r.zcard(KEYS.leased(GROUP)) == 2
    assert r.get(KEYS.lease(GROUP)) == begin.lease.lease_id.encode()
    assert rt.buffer.begin(GROUP, "other").kind == "busy", "one flusher per group"


def test_a_dead_flushers_lease_expires_and_its_items_return_in_order(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=2)
    register(rt, sim)
    fill(rt, 3)
    dead = rt.buffer.begin(GROUP, "own").lease
    assert dead is not None
    r.pexpire(KEYS.lease(GROUP), 1)  # the flusher died: its lease runs out
    wait_for(lambda: not r.exists(KEYS.lease(GROUP)), what="lease expiry")
    recovered = rt.buffer.begin(GROUP, "own").lease
    assert recovered is not None and recovered.ids == ["1", "2"]
    assert stats(r)["leases_expired"] == 1
    late = rt.buffer.settle(dead, Action.DELIVERED)
    assert late.settled == 0, "a late settle of a lost lease leaves re-leased items alone"
    done = rt.buffer.settle(recovered, Action.DELIVERED)
    assert done.settled == 2 and stats(r)["pending"] == 1


def test_the_limiter_reserves_a_slot_for_the_throttled_group(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=1, rate_per_s=20.0, rate_burst=1, portal_max_inflight=10)
    register(rt, sim)
    other = Group(GROUP.portal, "myconnector", 108)
    fill(rt, 1)
    fill(rt, 1, group=other, first=2)
    assert rt.buffer.begin(GROUP, "a").kind == "leased", "the burst's one slot"
    throttled = rt.buffer.begin(other, "b")
    assert throttled.kind == "throttled" and throttled.trigger is not None
    assert throttled.trigger.delay_s is not None and 0 < throttled.trigger.delay_s <= 0.05
    slot_at = r.get(KEYS.slot(GROUP.portal))
    assert slot_at is not None, "the future slot is reserved for the portal's next flush"
    level = r.hget(KEYS.bucket(GROUP.portal), "level")
    again = rt.buffer.begin(other, "c")
    assert again.kind in ("throttled", "leased")
    if again.kind == "throttled":
        assert r.hget(KEYS.bucket(GROUP.portal), "level") == level, "no second reservation"
    leased = wait_for(lambda: rt.buffer.begin(other, "d").lease, what="the reserved slot")
    assert leased.ids == ["2"] and stats(r)["rate_waits"] == 1


def test_inflight_calls_per_portal_are_capped(
    make_rt: Callable[..., Runtime], sim: Simulator
) -> None:
    rt = make_rt(batch_size=1, portal_max_inflight=1)
    register(rt, sim)
    other = Group(GROUP.portal, "myconnector", 108)
    fill(rt, 1)
    fill(rt, 1, group=other, first=2)
    assert rt.buffer.begin(GROUP, "a").kind == "leased"
    assert rt.buffer.begin(other, "b").kind == "wait", "the portal's one call is in flight"


def test_an_unregistered_portal_parks_its_groups_until_register(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=1)
    fill(rt, 1)
    parked = rt.buffer.begin(GROUP, "own")
    assert parked.kind == "wait" and parked.trigger is not None
    assert parked.trigger.delay_s == float("inf") and not parked.trigger.send
    assert r.zscore(KEYS.due, GROUP.id) == 1e18, "out of the sweep's reach"
    register(rt, sim)
    assert rt.buffer.resume_portal(GROUP.portal) == 1
    assert rt.buffer.claim_due() == [GROUP], "due again at once"
    assert rt.buffer.begin(GROUP, "own").kind == "leased"


def test_the_sweep_claims_overdue_groups_once_per_grace_period(
    make_rt: Callable[..., Runtime], r: redis.Redis
) -> None:
    rt = make_rt(max_countdown_s=0.05, sweep_interval_s=0.05, flush_window_s=0.01)
    fill(rt, 1)  # its trigger is "lost": never sent
    assert rt.buffer.claim_due() == [], "not overdue before the trigger's time + grace"
    claimed = wait_for(rt.buffer.claim_due, what="the sweep's claim")
    assert claimed == [GROUP]
    assert rt.buffer.claim_due() == [], "pushed a grace period on: not doubled"


def test_the_own_trigger_is_released_when_its_flush_begins(
    make_rt: Callable[..., Runtime], r: redis.Redis
) -> None:
    rt = make_rt(flush_tick_s=0)
    first = rt.buffer.ingest(GROUP, "1", element(1))
    assert r.exists(KEYS.trigger(GROUP.portal))
    rt.buffer.begin(GROUP, "someone-else")
    assert r.exists(KEYS.trigger(GROUP.portal)), "another task's trigger stays"
    rt.buffer.begin(GROUP, first.trigger.task_id)
    held = r.get(KEYS.trigger(GROUP.portal)) or b""
    assert not held.startswith(first.trigger.task_id.encode()), "its own flush frees it"
