"""Ticks (worker/store/triggers.py, worker/flush/tick.py): many portals whose waits end in one
tick cost one flush task; its run flushes each portal once, a slow portal holding only its own
thread; a tick late or early takes what is due; a lost tick's groups are the sweep's."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import stats, wait_for
from tests.inprocess.conftest import SentTasks, element
from worker.flush import tick as ticks
from worker.flush.tick import flush_tick
from worker.ingest.validation import registration
from worker.names import FLUSH_TASK, FLUSH_TICK_TASK
from worker.runtime import Runtime
from worker.store.keys import Group, Keys

KEYS = Keys()


def portals(rt: Runtime, sim: Simulator, n: int) -> list[Group]:
    """`n` simulated portals, registered, one group each."""
    groups = []
    for i in range(n):
        creds = sim.add_portal(PortalConfig(member_id=f"t{i}", connectors=["myconnector"]))
        rt.portals.register(registration(creds.as_register_kwargs()))
        groups.append(Group(f"t{i}", "myconnector", 1))
    return groups


def ingest_all(rt: Runtime, groups: list[Group]) -> None:
    for i, g in enumerate(groups):  # as delivery.confirm does
        rt.send_flush(g, rt.buffer.ingest(g, str(i + 1), element(i + 1)).trigger)


def flushes(sent: SentTasks) -> list[Any]:
    return [c for c in sent.calls if c.name in (FLUSH_TASK, FLUSH_TICK_TASK)]


def run_at_its_time(rt: Runtime, task: Any, again: list[int]) -> int:
    at = task.kwargs["tick"] * rt.buffer.tick_s
    wait_for(lambda: rt.buffer.server_time() >= at + 0.002, what="the tick's time")
    return flush_tick(rt, task.kwargs["tick"], task.task_id or "", again.append)


def test_portals_waiting_in_one_tick_cost_one_task_and_one_call_each(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    # a tick as long as the window: every ingest below ends its wait in the same tick or the next
    rt, again = make_rt(flush_window_s=0.4, flush_tick_s=0.1), list[int]()
    groups = portals(rt, sim, 12)
    ingest_all(rt, groups)
    tasks = flushes(sent)
    assert all(t.name == FLUSH_TICK_TASK for t in tasks) and 1 <= len(tasks) <= 2, tasks
    ran = sum(run_at_its_time(rt, t, again) for t in tasks)
    assert ran == 12 and not again, "each portal flushed once, by its tick's task"
    assert stats(r)["delivered"] == 12
    assert all(sim.counters(g.portal)["calls"] == 1 for g in groups)
    assert r.zcard(KEYS.soon) == 0 and r.zcard(KEYS.ticks) == 0, "each tick took its own"
    assert all(not r.exists(KEYS.trigger(g.portal)) for g in groups), "every trigger released"


def test_slow_portals_hold_their_own_threads_not_their_ticks_other_portals(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    """More slow portals than a tick runs quick flushes at once (ticks.ACTIVE): each stops
    counting once it is slow, and the tick's other portals are flushed while they wait."""
    rt, again = make_rt(flush_window_s=0.4, flush_tick_s=0.1), list[int]()
    groups = portals(rt, sim, ticks.ACTIVE + 4)
    slow = [g.portal for g in groups[: ticks.ACTIVE + 1]]
    for portal in slow:
        sim.inject(Fault(kind="latency", latency_s=6.0, portal=portal, count=1))
    ingest_all(rt, groups)
    done: list[int] = []
    tasks = flushes(sent)
    runner = threading.Thread(
        target=lambda: done.extend(run_at_its_time(rt, t, again) for t in tasks)
    )
    runner.start()
    others = [g.portal for g in groups if g.portal not in slow]
    wait_for(lambda: all(sim.accepted(p) for p in others), timeout_s=5.0, what="the others")
    assert runner.is_alive(), "while the slow portals' calls are open"
    assert not any(sim.accepted(p) for p in slow)
    runner.join(timeout=30)
    assert not runner.is_alive() and sum(done) == len(groups)
    # their calls ran out of time (the suite's short read timeout): kept for a retry, not lost
    for group in groups[: ticks.ACTIVE + 1]:
        assert sim.accepted(group.portal) or r.zcard(KEYS.queue(group)) == 1


def test_a_late_tick_catches_up_and_an_early_one_leaves_the_next_ticks_groups(
    make_rt: Callable[..., Runtime], r: redis.Redis
) -> None:
    rt = make_rt(flush_window_s=0.4, flush_tick_s=0.1)
    now = rt.buffer.server_time()
    tick = int(now / 0.1)  # a tick already past
    r.zadd(KEYS.soon, {"a:c:1": now - 5, "b:c:1": now - 0.01, "c:c:1": now + 60})
    r.zadd(KEYS.ticks, {"the-task": tick})
    taken, more = rt.buffer.take_tick(tick, limit=10)
    assert sorted(g.portal for g in taken) == ["a", "b"] and not more, "what is due by now"
    assert r.zcard(KEYS.ticks) == 0, "the tick is forgotten: a wait in it claims a new task"
    again, _ = rt.buffer.take_tick(tick, limit=10)
    assert again == taken, "listed until their flush begins: a task delivered again finds them"
    r.zrem(KEYS.soon, "a:c:1", "b:c:1")  # (as their portals' begin.lua does)
    early = int((now + 60) / 0.1) + 1  # run before its time: takes up to its own time only
    assert [g.portal for g in rt.buffer.take_tick(early - 1000, limit=10)[0]] == []
    assert [g.portal for g in rt.buffer.take_tick(early, limit=10)[0]] == ["c"]


def test_a_flush_that_begins_takes_its_groups_out_of_soon_once_due(
    make_rt: Callable[..., Runtime], r: redis.Redis
) -> None:
    rt = make_rt(flush_window_s=0.4, flush_tick_s=0.1)
    now = rt.buffer.server_time()
    due, later = Group("p", "c", 1), Group("p", "c", 2)
    r.zadd(KEYS.soon, {due.id: now - 0.5, later.id: now + 30})
    rt.buffer.begin(due, "a-tick", also=[later])
    assert r.zscore(KEYS.soon, due.id) is None, "its wait ended: this flush is the one"
    assert r.zscore(KEYS.soon, later.id) == pytest.approx(now + 30), "its tick is still to come"


def test_a_tick_with_more_groups_than_it_takes_sends_itself_again(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, monkeypatch: Any
) -> None:
    monkeypatch.setattr(ticks, "TAKE_LIMIT", 2)
    rt, again = make_rt(flush_window_s=0.4, flush_tick_s=0.1), list[int]()
    groups = portals(rt, sim, 5)
    now = rt.buffer.server_time()
    r.zadd(KEYS.soon, {g.id: now - 1 for g in groups})
    assert flush_tick(rt, 7, "t", again.append) == 2 and again == [7]
    assert flush_tick(rt, 7, "t", again.append) == 2 and again == [7, 7]
    assert flush_tick(rt, 7, "t", again.append) == 1 and again == [7, 7]


@pytest.mark.parametrize("tick_s", [0.1, 0.0])
def test_a_lost_ticks_groups_are_due_for_the_sweep(
    make_rt: Callable[..., Runtime], r: redis.Redis, sent: SentTasks, tick_s: float
) -> None:
    """The trigger's task is never run: each group is due a grace period after its time, so
    the sweep re-triggers it (with ticks as without)."""
    rt = make_rt(flush_window_s=0.4, flush_tick_s=tick_s)
    g = Group("lost", "myconnector", 1)
    at = rt.buffer.server_time() + 0.4
    rt.send_flush(g, rt.buffer.ingest(g, "1", element(1)).trigger)
    (task,) = flushes(sent)
    due = r.zscore(KEYS.due, g.id)
    assert due is not None and at + rt.buffer.grace_s - 0.05 <= due <= at + rt.buffer.grace_s + 0.2
    assert task.name == (FLUSH_TICK_TASK if tick_s else FLUSH_TASK)


def test_a_full_batch_goes_at_once_in_a_task_of_its_own(
    make_rt: Callable[..., Runtime], sent: SentTasks
) -> None:
    rt = make_rt(batch_size=2, flush_window_s=0.4, flush_tick_s=0.1)
    g = Group("full", "myconnector", 1)
    for i in (1, 2):
        rt.send_flush(g, rt.buffer.ingest(g, str(i), element(i)).trigger)
    first, full = flushes(sent)
    assert first.name == FLUSH_TICK_TASK and first.countdown
    assert full.name == FLUSH_TASK and not full.countdown, "no wait, no tick"


def test_the_tick_is_at_most_a_quarter_of_the_window(make_rt: Callable[..., Runtime]) -> None:
    assert make_rt(flush_window_s=1.0).buffer.tick_s == 0.25
    assert make_rt(flush_window_s=0.2).buffer.tick_s == 0.05
    assert make_rt(flush_tick_s=0).buffer.tick_s == 0


def test_no_ticks_on_rabbitmq(make_rt: Callable[..., Runtime]) -> None:
    """RabbitMQ's native delayed delivery counts whole seconds: no ticks there."""
    assert make_rt(broker_url="amqp://guest:guest@127.0.0.1:5672//").buffer.tick_s == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@examples(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tick=JSON_VALUES)
def test_a_tick_task_with_a_hostile_tick_flushes_nothing_and_never_raises(
    tick: Any, make_rt: Callable[..., Runtime], r: redis.Redis
) -> None:
    """Anyone who can write to the broker can send `delivery.flush_tick`: a tick that is not a
    whole number (a bool, a float, a string, a list) is ignored, and nothing is taken."""
    from tasks import delivery as tasks

    rt = make_rt(flush_window_s=0.4, flush_tick_s=0.1)
    r.zadd(KEYS.soon, {"p:c:1": rt.buffer.server_time() - 1})
    assert tasks.flush_tick.run(tick=tick) == 0
    assert r.zcard(KEYS.soon) == 1, "nothing taken"


def _no_id(value: Any) -> bool:
    """Not a group id (a valid one would be flushed, not ignored)."""
    try:
        Group.parse(value)
    except (AttributeError, TypeError, ValueError):
        return True
    return False


@examples(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(group=(JSON_VALUES | st.sampled_from(["", "a:b", "a:b:c", "a:b:1:2", ":::"])).filter(_no_id))
def test_a_flush_task_with_a_hostile_group_flushes_nothing_and_never_raises(group: Any) -> None:
    """`delivery.flush` names a group id `portal:connector:line`; anything else is ignored."""
    from tasks import delivery as tasks

    assert tasks.flush.run(group=group) == "ignored"
