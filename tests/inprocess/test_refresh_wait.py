"""No call with a token that is being replaced or was refused. Platform facts: a 401 answers an
expired or unknown token, refreshing spends the refresh token and ends the old access token, and
every call, refused or not, takes a slot of the portal's leaky bucket that its other callers share.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import redis

from b24sim import Fault, Simulator
from tests.harness import portal_hash, stats, wait_for
from tests.inprocess.conftest import GROUP, SentTasks, fill, register
from worker.flush.flow import flush
from worker.names import FLUSH_TASK
from worker.runtime import Runtime
from worker.store.keys import Group, Keys

KEYS = Keys()
OTHER = Group("p1", "myconnector", 108)


def _another_process_refreshes(r: redis.Redis) -> None:
    r.set(KEYS.refresh_lock("p1"), "another process", px=5000)


def _other_waits_on_a_refresh_that_just_ended(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> Runtime:
    """GROUP and OTHER hold one item each; OTHER waits on another process's refresh, which has
    just ended (its lock gone) without waking anyone."""
    rt = make_rt(batch_size=1)
    register(rt, sim)
    fill(rt, 1)
    fill(rt, 1, group=OTHER, first=2)
    _another_process_refreshes(r)
    assert flush(rt, OTHER, "task") == "refresh_wait"
    r.delete(KEYS.refresh_lock("p1"))
    return rt


def _woken(sent: SentTasks) -> list[str]:
    return [c.kwargs["group"] for c in sent.calls if c.name == FLUSH_TASK and not c.countdown]


def test_a_refresh_under_way_makes_the_group_wait_without_a_slot(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    rt = make_rt(batch_size=1)
    register(rt, sim)
    fill(rt, 1)
    _another_process_refreshes(r)
    sent.calls.clear()
    assert flush(rt, GROUP, "task") == "refresh_wait"
    assert sim.counters("p1")["calls"] == 0 and not r.exists(KEYS.bucket("p1")), "no slot taken"
    assert not sent.calls, "no countdown: the refresh's end wakes the group"
    assert r.smembers(KEYS.refresh_waiters("p1")) == {GROUP.id.encode()}
    assert 4000 < r.pttl(KEYS.refresh_waiters("p1")) <= 5000 + 1000 * rt.buffer.grace_s
    due = r.zscore(KEYS.due, GROUP.id)
    assert due is not None and due >= rt.buffer.server_time() + 4, "the sweep: at the lock's end"
    assert stats(r)["refresh_waits"] == 1

    r.delete(KEYS.refresh_lock("p1"))  # that refresher ended: it wakes the waiters
    assert rt.buffer.wake_refresh_waiters("p1") == [GROUP]
    assert not r.exists(KEYS.refresh_waiters("p1"))
    assert flush(rt, GROUP, "task") == "delivered"
    assert float(r.hget(KEYS.bucket("p1"), "level") or 0) == 1.0, "one slot, for the one call"


def test_an_oauth_call_still_out_after_its_lock_lapsed_is_waited_for_too(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=1)
    register(rt, sim)
    fill(rt, 1)
    deadline = rt.buffer.server_time() + 5
    r.zadd(KEYS.refreshing("p1"), {"1:another process": deadline})  # its lock is gone
    assert flush(rt, GROUP, "task") == "refresh_wait"
    assert sim.counters("p1")["calls"] == 0
    due = r.zscore(KEYS.due, GROUP.id)
    assert due is not None and due >= deadline, "the sweep: at that call's deadline"
    r.zadd(KEYS.refreshing("p1"), {"1:another process": rt.buffer.server_time() - 1})
    assert flush(rt, GROUP, "task") == "delivered", "a deadline passed is no refresh under way"


def test_the_refresher_wakes_the_waiting_groups_which_go_with_the_new_token(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    rt = _other_waits_on_a_refresh_that_just_ended(make_rt, sim, r)
    sim.expire_tokens("p1")
    sent.calls.clear()
    assert flush(rt, GROUP, "task") == "refresh"  # 401, refreshed by this flush
    assert OTHER.id in _woken(sent), "the waiter is woken at once"
    assert flush(rt, OTHER, "task") == "delivered"
    assert flush(rt, GROUP, "task") == "delivered"
    counters = sim.counters("p1")
    assert counters["unauthorized_401"] == 1 and counters["refreshes"] == 1
    s = stats(r)
    assert s["calls:auth"] == 1 and s["calls:done"] == 2 and s["api_error:expired_token"] == 1


def test_a_401_during_another_process_refresh_waits_for_its_end(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=1)
    register(rt, sim)
    sim.expire_tokens("p1")
    sim.inject(Fault(kind="latency", latency_s=0.5, count=1, portal="p1"))
    fill(rt, 1)
    version = int(portal_hash(r, "p1")["version"])

    def refresh_begins_during_the_call() -> None:
        wait_for(lambda: r.exists(KEYS.lease(GROUP)), what="the lease")
        _another_process_refreshes(r)

    thread = threading.Thread(target=refresh_begins_during_the_call)
    thread.start()
    assert flush(rt, GROUP, "task") == "refresh"  # its refresh: in progress elsewhere
    thread.join()
    assert portal_hash(r, "p1")["refused_version"] == str(version)
    wait_for(lambda: flush(rt, GROUP, "task") == "refresh_wait", what="a wait for the refresh")
    assert sim.counters("p1")["calls"] == 1, "one call with the token being replaced, no more"


def test_a_refused_version_nobody_refreshes_is_refreshed_before_any_call(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    """A process got a 401 and died before its refresh, or its refresh lock expired."""
    rt = make_rt(batch_size=1)
    register(rt, sim)
    sim.expire_tokens("p1")
    fill(rt, 1)
    version = int(portal_hash(r, "p1")["version"])
    assert not rt.buffer.refuse("p1", version - 1, "expired_token"), "an older version is moot"
    assert rt.buffer.refuse("p1", version, "expired_token")
    assert flush(rt, GROUP, "task") == "refresh"
    assert sim.counters("p1")["calls"] == 0 and sim.counters("p1")["refreshes"] == 1
    assert not r.exists(KEYS.bucket("p1")) and not r.hget(KEYS.meta(GROUP), "attempts")
    assert flush(rt, GROUP, "task") == "delivered"
    assert sim.counters("p1")["unauthorized_401"] == 0
    assert int(portal_hash(r, "p1")["version"]) == version + 1


def test_a_failed_refresh_wakes_the_waiters_into_the_parked_portal(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    rt = _other_waits_on_a_refresh_that_just_ended(make_rt, sim, r)
    sim.revoke_refresh("p1")
    sim.expire_tokens("p1")
    sent.calls.clear()
    assert flush(rt, GROUP, "task") == "park"  # invalid_grant
    assert OTHER.id in _woken(sent)
    assert flush(rt, OTHER, "task") == "wait", "parked: no call"
    assert sim.counters("p1")["calls"] == 1
