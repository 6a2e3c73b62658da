"""While one process refreshes a portal's tokens, the others do not call the portal with the token
being replaced: they wait for the refresh to end, then go at once with the new token.

Bitrix24 facts checked: an expired access token is answered 401 `expired_token`; a refresh token
is single-use, and refreshing invalidates the old access token; every REST call, refused or not,
takes a slot of the portal's leaky bucket.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from b24producer import Producer
from b24sim import Fault, PortalConfig, Simulator
from tests.harness import (
    Fleet,
    WorkerProcess,
    confirmation,
    delivered_ids,
    producer,
    stats,
    wait_for,
)
from tests.reliability.util import describe, spawn, wait_ready
from worker.store.keys import Keys

WORKERS = 4
LINES = 8
#: the OAuth server answers a refresh after this long: far longer than a flush's retry interval
SLOW_OAUTH_S = 3.0
#: measured before the refresh wait (runs of this test on main): with the slow OAuth server
#: 65 to 81 calls, 55 to 72 of them with the token being replaced; with a normal one 9 to 11
SLOW_CALLS_BEFORE = "65-81"
NORMAL_CALLS_BEFORE = (9, 11)
ENV = {
    # the refresh lock and the OAuth call's timeout both outlive the slow answer (the OAuth call's
    # limit is DELIVERY_OAUTH_TIMEOUT_S where it has its own, DELIVERY_HTTP_READ_TIMEOUT_S before)
    "DELIVERY_REFRESH_LOCK_TTL_S": "10",
    "DELIVERY_OAUTH_TIMEOUT_S": "6",
    "DELIVERY_HTTP_READ_TIMEOUT_S": "6",
    "DELIVERY_LEASE_TTL_S": "10",
}


def _expired_round(
    sim: Simulator, p: Producer, r: redis.Redis, member_id: str, first_id: int, oauth_delay_s: float
) -> dict[str, int]:
    """Expire the portal's access token, send one confirmation per line, wait for delivery."""
    sim.set_oauth_delay(oauth_delay_s)
    sim.expire_tokens(member_id)
    ids = set(range(first_id, first_id + LINES))
    for n, message_id in enumerate(sorted(ids)):
        p.confirm(**confirmation(member_id, message_id, line=n + 1))
    started = time.monotonic()
    wait_for(
        lambda: ids <= set(delivered_ids(sim, member_id)),
        timeout_s=60,
        what=f"{member_id}: every confirmation delivered ({describe(r)})",
    )
    counters = sim.counters(member_id)
    counters["seconds"] = round(time.monotonic() - started)
    counters["replaced"] = sim.replaced_token_calls(member_id)
    counters["invalid_grant"] = sim.invalid_grants(member_id)
    return counters


def _refused_per_process(workers: list[WorkerProcess], member_id: str) -> list[int]:
    """Calls each worker process made that the portal refused for their token (its log)."""
    counts = []
    for worker in workers:
        lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
        counts.append(
            sum(
                1
                for e in lines
                if e.get("event") == "token refused" and e.get("portal") == member_id
            )
        )
    return counts


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_no_calls_with_a_token_being_replaced(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    workers = [
        spawn(fleet, concurrency=1, beat=i == 0, DELIVERY_BATCH_SIZE="1", **ENV)
        for i in range(WORKERS)
    ]
    wait_ready(workers, timeout_s=120)
    p = producer(redis_url)
    for config in (
        PortalConfig(member_id="slow", rate_per_s=100, burst=500),
        PortalConfig(member_id="normal", rate_per_s=100, burst=500),
    ):
        p.register_portal(**sim.add_portal(config).as_register_kwargs())
        wait_for(lambda c=config: r.exists(Keys().portal(c.member_id)), what="registration")

    slow = _expired_round(sim, p, r, "slow", 1, SLOW_OAUTH_S)
    slow_per_process = _refused_per_process(workers, "slow")
    normal = _expired_round(sim, p, r, "normal", 1001, 0.0)
    normal_per_process = _refused_per_process(workers, "normal")
    worker_stats = stats(r)
    print(
        f"\n[refresh wait] workers={WORKERS} groups={LINES} oauth_answers_after={SLOW_OAUTH_S}s: "
        f"calls={slow['calls']} (before: {SLOW_CALLS_BEFORE}) "
        f"with_a_replaced_token={slow['replaced']} refused_401={slow['unauthorized_401']} "
        f"per process={slow_per_process} refreshes={slow['refreshes']} "
        f"invalid_grant={slow['invalid_grant']} delivered_in={slow['seconds']}s"
        f"\n[refresh wait] normal OAuth: calls={normal['calls']} "
        f"(before: {NORMAL_CALLS_BEFORE[0]}-{NORMAL_CALLS_BEFORE[1]}) "
        f"with_a_replaced_token={normal['replaced']} refused_401={normal['unauthorized_401']} "
        f"per process={normal_per_process} refreshes={normal['refreshes']}"
        f"\n[refresh wait] worker counters: "
        f"{ {k: v for k, v in sorted(worker_stats.items()) if k.startswith(('calls', 'refresh'))} }"
    )
    for figures, per_process in ((slow, slow_per_process), (normal, normal_per_process)):
        assert sum(per_process) == figures["unauthorized_401"], "each 401 logged where it was seen"
        assert max(per_process) <= 1, "at most one call refused for its token per process"
        assert figures["replaced"] <= figures["unauthorized_401"]
        assert figures["refreshes"] == 1
        assert figures["invalid_grant"] == 0
    # one call per group, plus those already in flight when the token expired (at most
    # DELIVERY_PORTAL_MAX_INFLIGHT=2): never more than before
    assert normal["calls"] <= NORMAL_CALLS_BEFORE[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_refresh_that_dies_frees_the_waiting_groups_when_its_lock_expires(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    env = {  # the lock outlives killing the refresher and starting a second worker
        "DELIVERY_REFRESH_LOCK_TTL_S": "15",
        "DELIVERY_OAUTH_TIMEOUT_S": "10",
        "DELIVERY_HTTP_READ_TIMEOUT_S": "20",
        "DELIVERY_LEASE_TTL_S": "22",
        "DELIVERY_BATCH_SIZE": "1",
    }
    refresher = fleet.start(concurrency=1, beat=False, **env)
    p = producer(redis_url)
    p.register_portal(
        **sim.add_portal(
            PortalConfig(member_id="dies", rate_per_s=100, burst=500)
        ).as_register_kwargs()
    )
    wait_for(lambda: r.exists(Keys().portal("dies")), what="registration")
    # the first refresh never answers (and does not spend the refresh token): its process dies
    sim.inject(Fault(kind="drop", target="oauth", latency_s=25, count=1, portal="dies"))
    sim.expire_tokens("dies")
    lock = Keys().refresh_lock("dies")
    for line in range(1, 5):
        p.confirm(**confirmation("dies", line, line=line))
    wait_for(lambda: r.exists(lock), what="the refresh to start")
    refresher.kill()  # in its OAuth call, holding the lock
    calls_while_locked = sim.counters("dies")["calls"]
    fleet.start(concurrency=2, beat=True, **env)
    wait_for(lambda: not r.exists(lock), timeout_s=30, what="the dead refresher's lock to expire")
    expired = time.monotonic()
    assert sim.counters("dies")["calls"] == calls_while_locked, "nobody called while locked"
    wait_for(
        lambda: {2, 3, 4} <= set(delivered_ids(sim, "dies")),
        timeout_s=30,
        what=f"the waiting groups delivered after the lock expired ({describe(r)})",
    )
    waiters_after = time.monotonic() - expired
    # the dead refresher's own batch comes back when its lease expires
    wait_for(lambda: 1 in delivered_ids(sim, "dies"), timeout_s=30, what="the refresher's batch")
    counters = sim.counters("dies")
    print(
        f"\n[refresh wait] dead refresher: calls while its lock was held={calls_while_locked}; "
        f"the waiting groups delivered {waiters_after:.1f}s after the lock expired, its own "
        f"batch {time.monotonic() - expired:.1f}s after (its lease); calls={counters['calls']} "
        f"with_a_replaced_token={sim.replaced_token_calls('dies')} "
        f"refused_401={counters['unauthorized_401']} refreshes={counters['refreshes']} "
        f"refresh_waits={stats(r).get('refresh_waits')}"
    )
    assert waiters_after < 5, "the sweep re-triggers the waiters once the lock expired"
    assert counters["unauthorized_401"] == 1, "only the call that started the refresh"
    assert counters["refreshes"] == 1
    assert stats(r).get("refresh_waits", 0) >= 1, "the second worker waited for the refresh"
