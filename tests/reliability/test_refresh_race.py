"""Eight worker processes hit expired_token for one portal at once: exactly one refresh reaches
the OAuth server, everything is delivered, and no process keeps the invalidated token."""

from __future__ import annotations

import pytest
import redis

from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, confirmation, portal_hash, producer, stats, wait_for
from tests.reliability.util import spawn, wait_ready

WORKERS = 8
LINES = 16


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_eight_processes_refresh_once(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    workers = [
        spawn(fleet, concurrency=1, beat=i == 0, DELIVERY_BATCH_SIZE="1") for i in range(WORKERS)
    ]
    wait_ready(workers, timeout_s=120)
    p = producer(redis_url)
    creds = sim.add_portal(
        PortalConfig(member_id="race", refresh_latency_s=0.5, rate_per_s=100, burst=500)
    )
    p.register_portal(**creds.as_register_kwargs())
    wait_for(lambda: portal_hash(r, "race").get("version"), what="registration")
    sim.expire_tokens("race")
    for line in range(1, LINES + 1):
        p.confirm(**confirmation("race", line, line=line))
    wait_for(
        lambda: {int(a.im["message_id"]) for a in sim.accepted("race")} >= set(range(1, 17)),
        timeout_s=60,
        what="the first round delivered",
    )
    first = sim.counters("race")
    current = sim.credentials("race").access_token
    stored = portal_hash(r, "race")
    # a second round: every process must now use the new token (no 401 of any kind)
    for line in range(1, LINES + 1):
        p.confirm(**confirmation("race", 100 + line, line=line))
    wait_for(
        lambda: (
            {int(a.im["message_id"]) for a in sim.accepted("race")} >= set(range(101, 101 + LINES))
        ),
        timeout_s=60,
        what="the second round delivered",
    )
    after = sim.counters("race")
    print(
        f"\n[refresh race] workers={WORKERS} groups={LINES} "
        f"expired_token_401={first['expired_token_401']} "
        f"refreshes={after['refreshes']} refresh_failures={after['refresh_failures']} "
        f"no_auth_401={after['no_auth_401']} second_round_401s="
        f"{after['unauthorized_401'] - first['unauthorized_401']} "
        f"token_refreshes(stats)={stats(r).get('token_refreshes')}"
    )
    assert first["expired_token_401"] >= 2, "several processes saw expired_token at once"
    assert after["refreshes"] == 1
    assert after["refresh_failures"] == 0
    assert stored["access_token"] == current, "Redis holds the token the OAuth server issued"
    assert stored["refresh_token"] == sim.credentials("race").refresh_token
    assert after["unauthorized_401"] == first["unauthorized_401"], "no stale token after refresh"
    # round 1: a flush that leased the old token while the refresh was in flight may reach the
    # portal after the OAuth server invalidated it (NO_AUTH_FOUND); it must be retried with the
    # new token, not park the portal
    assert portal_hash(r, "race").get("block_reason") not in ("NO_AUTH_FOUND", "invalid_grant")
    assert after["no_auth_401"] == first["no_auth_401"]
