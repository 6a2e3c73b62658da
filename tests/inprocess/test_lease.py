"""The short lease, renewed while the call runs: a live call longer than the lease keeps it
(nobody else flushes the group, nothing is sent twice); a dead flusher's lease runs out within
DELIVERY_LEASE_TTL_S and the sweep sees the group DELIVERY_SWEEP_INTERVAL_S later."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from b24sim import Fault, Simulator
from tests.harness import stats, wait_for
from tests.inprocess.conftest import GROUP, fill, register
from worker.flush.flow import flush
from worker.runtime import Runtime
from worker.store.keys import Keys

KEYS = Keys()


def test_a_call_longer_than_the_lease_keeps_it_by_renewal(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    # platform fact: a REST call may take up to 60 s; here a 2.5 s call against a 0.6 s lease
    rt = make_rt(batch_size=3, lease_ttl_s=0.6, http_read_timeout_s=10)
    register(rt, sim)
    fill(rt, 3)
    sim.inject(Fault(kind="latency", latency_s=2.5, portal=GROUP.portal, count=1))
    results: list[str] = []
    call = threading.Thread(target=lambda: results.append(flush(rt, GROUP, "task")))
    call.start()
    wait_for(lambda: r.exists(KEYS.lease(GROUP)), what="the lease taken")
    taken, others = time.monotonic(), []
    while call.is_alive():  # watch the lease for the whole call
        held = r.exists(KEYS.lease(GROUP))
        assert held or not call.is_alive(), "the lease lapsed while the call ran"
        if held and not others and time.monotonic() - taken > 1.2:  # two lifetimes in
            others.append(flush(rt, GROUP, "other"))
        call.join(0.05)
    assert time.monotonic() - taken > 2.0, "held for the whole call, > 3 lease lifetimes"
    assert others == ["busy"], "another flusher stays out"
    assert results == ["delivered"]
    assert len({a.call_id for a in sim.accepted()}) == 1, "one call, nothing sent twice"
    assert stats(r).get("leases_expired", 0) == 0
    assert not r.exists(KEYS.lease(GROUP)), "settled: the lease is gone"


def test_renewal_extends_only_our_own_lease(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=3, lease_ttl_s=5)
    register(rt, sim)
    fill(rt, 3)
    sim.inject(Fault(kind="latency", latency_s=0.1, portal=GROUP.portal))
    begin = rt.buffer.begin(GROUP, "task")
    assert begin.lease is not None
    r.pexpire(KEYS.lease(GROUP), 1000)
    assert rt.buffer.renew(begin.lease)
    assert r.pttl(KEYS.lease(GROUP)) > 4000
    due = r.zscore(KEYS.due, GROUP.id)
    now = rt.buffer.server_time()
    assert due is not None and now + 5 < due <= now + 5 + rt.settings.sweep_interval_s + 0.1
    r.set(KEYS.lease(GROUP), "someone-else", px=1000)  # the lease expired; another took it
    assert not rt.buffer.renew(begin.lease)
    assert r.pttl(KEYS.lease(GROUP)) <= 1000, "another flusher's lease is left alone"
