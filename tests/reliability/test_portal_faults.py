"""A hostile portal landscape: 5xx, 503s, drops, latency spikes, tokens expiring every few
seconds, one portal overloaded, one whose refresh token was revoked. Everything deliverable is
delivered, each parked portal is reported, nothing retryable is dead-lettered."""

from __future__ import annotations

import json
import time

import pytest
import redis

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import Fleet, confirmation, portal_hash, producer, stats, wait_for
from tests.reliability.util import SCALE, describe, spawn, wait_ready
from worker.store.keys import Keys

FLAKY = ("flaky-a", "flaky-b")
PER_FLAKY = 400 * SCALE
PARKED_ITEMS = 20


@pytest.mark.slow
@pytest.mark.timeout(180 * SCALE)
def test_faulty_portals_deliver_everything_deliverable(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = producer(redis_url)
    for mid in FLAKY:
        cfg = PortalConfig(member_id=mid, rate_per_s=50, burst=200, token_ttl_s=3)
        p.register_portal(**sim.add_portal(cfg).as_register_kwargs())
        sim.inject(Fault(error="INTERNAL_SERVER_ERROR", fraction=0.05, portal=mid, seed=1))
        sim.inject(Fault(error="QUERY_LIMIT_EXCEEDED", fraction=0.05, portal=mid, seed=2))
        sim.inject(Fault(kind="drop", fraction=0.02, portal=mid, seed=3))
        sim.inject(Fault(kind="non_json", fraction=0.02, portal=mid, seed=4))
        sim.inject(Fault(kind="latency", latency_s=0.8, fraction=0.05, portal=mid, seed=5))
    p.register_portal(**sim.add_portal(PortalConfig(member_id="overloaded")).as_register_kwargs())
    sim.inject(Fault(kind="overload", portal="overloaded"))
    p.register_portal(**sim.add_portal(PortalConfig(member_id="revoked")).as_register_kwargs())
    workers = [
        spawn(fleet, concurrency=2, beat=i == 0, DELIVERY_MAX_ATTEMPTS="8") for i in range(2)
    ]
    wait_ready(workers)
    wait_for(lambda: portal_hash(r, "revoked").get("version"), what="registrations")
    sim.revoke_refresh("revoked")
    sim.expire_tokens("revoked")
    expected: dict[str, set[int]] = {mid: set() for mid in FLAKY}
    for i in range(PER_FLAKY):
        for n, mid in enumerate(FLAKY):
            message_id = 1 + i * 2 + n
            p.confirm(**confirmation(mid, message_id, line=1 + i % 5))
            expected[mid].add(message_id)
        if i < PARKED_ITEMS:
            p.confirm(**confirmation("overloaded", 1 + i, line=1 + i % 2))
            p.confirm(**confirmation("revoked", 1 + i, line=1 + i % 2))
        if i % 20 == 19:
            time.sleep(0.4)  # spread the flow over several token lifetimes (3 s)

    def done() -> bool:
        for mid in FLAKY:  # a healthy (only flaky) portal must never be parked: fail at once
            reason = portal_hash(r, mid).get("block_reason")
            if reason in ("NO_AUTH_FOUND", "invalid_grant"):
                raise AssertionError(f"healthy portal {mid} parked until re-registration: {reason}")
        return all(
            expected[mid] <= {int(a.im["message_id"]) for a in sim.accepted(mid)} for mid in FLAKY
        )

    try:
        wait_for(done, timeout_s=150 * SCALE, interval_s=0.25, what="the flaky portals delivered")
        reasons = {
            mid: wait_for(
                lambda mid=mid: portal_hash(r, mid).get("block_reason"),  # type: ignore[misc]
                timeout_s=20,
                what=f"{mid} parked",
            )
            for mid in ("overloaded", "revoked")
        }
    except AssertionError:
        print(describe(r))
        raise
    s = stats(r)
    dead = [json.loads(v) for v in r.hvals(Keys().dead_data)]
    logs = fleet.logs()
    counters = {mid: sim.counters(mid) for mid in (*FLAKY, "overloaded", "revoked")}
    errors = {k: v for k, v in s.items() if k.startswith("api_error:")}
    print(
        f"\n[portal faults] enqueued={2 * PER_FLAKY} delivered="
        f"{sum(len({a.im['message_id'] for a in sim.accepted(m)}) for m in FLAKY)} lost=0 "
        f"duplicates={sum(len(sim.accepted(m)) for m in FLAKY) - 2 * PER_FLAKY} "
        f"dead={len(dead)} refreshes={[counters[m]['refreshes'] for m in FLAKY]} "
        f"parked={reasons} api_errors={errors}"
    )
    assert reasons["overloaded"] == "OVERLOAD_LIMIT"
    assert reasons["revoked"] == "invalid_grant"
    assert "portal parked" in logs
    assert not dead, f"retryable failures were dead-lettered: {dead[:2]}"
    assert counters["revoked"]["success"] == 0 and counters["overloaded"]["success"] == 0
    assert all(counters[m]["refreshes"] >= 2 for m in FLAKY), "tokens expired and were refreshed"
    assert all(counters[m]["refresh_failures"] == 0 for m in FLAKY)
    # the parked portals' confirmations wait in the buffer: not lost, not dead
    assert len(sim.accepted("overloaded")) == 0
    sim.clear_faults("overloaded")
    wait_for(
        lambda: len({a.im["message_id"] for a in sim.accepted("overloaded")}) == PARKED_ITEMS,
        timeout_s=30,
        what="the overloaded portal delivers after the overload ends",
    )
    p.register_portal(**sim.issue_credentials("revoked").as_register_kwargs())
    wait_for(
        lambda: len({a.im["message_id"] for a in sim.accepted("revoked")}) == PARKED_ITEMS,
        timeout_s=30,
        what="the revoked portal delivers after re-registration",
    )
    print("  parked portals delivered after the overload ended / re-registration")
