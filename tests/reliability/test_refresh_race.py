"""Eight worker processes hit expired_token for one portal at once: exactly one refresh reaches
the OAuth server, everything is delivered, and no process keeps the invalidated token."""

from __future__ import annotations

import threading

import pytest
import redis

from b24sim import PortalConfig, Simulator
from tests.harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    Fleet,
    confirmation,
    portal_hash,
    producer,
    stats,
    wait_for,
)
from tests.reliability.util import spawn, wait_ready
from worker.errors import SettingsError
from worker.ingest.validation import registration
from worker.portals.registry import PortalStore, Refresh
from worker.settings import Settings
from worker.store.keys import Keys

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
    # the others wait for the refresh instead of calling with the expired token
    assert 1 <= first["expired_token_401"] <= WORKERS, "at most one doomed call per process"
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


# -- the old fault, forced: a refresh lock that expires while the OAuth call is still running.
# Settings are built directly (the dataclass does not validate), with a lock far below what
# settings validation allows; two refreshers run in this process against the real simulator and
# Redis, through the same PortalStore.refresh the workers use.

LOCK_S = 0.3


def _unsafe_settings(redis_url: str, oauth_url: str) -> Settings:
    s = Settings(
        redis_url=redis_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        oauth_url=oauth_url,
        oauth_hosts="127.0.0.1",
        allowed_endpoint_networks="public,loopback",
        oauth_timeout_s=5.0,
        refresh_lock_ttl_s=LOCK_S,
    )
    with pytest.raises(SettingsError, match="DELIVERY_REFRESH_LOCK_TTL_S"):
        s.validate()  # production settings could not be this way
    return s


def _race(
    r: redis.Redis, sim: Simulator, redis_url: str, member_id: str
) -> tuple[PortalStore, int, dict[str, Refresh | Exception]]:
    store = PortalStore(r, _unsafe_settings(redis_url, sim.oauth_url))
    store.register(registration(sim.credentials(member_id).as_register_kwargs()))
    version = int(portal_hash(r, member_id)["version"])
    results: dict[str, Refresh | Exception] = {}

    def run(name: str) -> None:
        try:
            results[name] = store.refresh(member_id, version)
        except Exception as exc:  # recorded for the assertions
            results[name] = exc

    first = threading.Thread(target=run, args=("first",))
    first.start()
    lock = Keys().refresh_lock(member_id)
    wait_for(lambda: r.exists(lock), what="the first refresher's lock")
    wait_for(lambda: not r.exists(lock), what="the lock to expire mid-call")
    second = threading.Thread(target=run, args=("second",))
    second.start()
    first.join(30)
    second.join(30)
    return store, version, results


def test_invalid_grant_after_a_lapsed_lock_retries_with_the_pair_stored_meanwhile(
    sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    # the OAuth server takes 1 s before it spends a token: the lock (0.3 s) lapses, a second
    # process refreshes the same token and gets invalid_grant, after the first stored its pair
    sim.add_portal(PortalConfig(member_id="slow", refresh_latency_s=1.0))
    _, version, results = _race(r, sim, redis_url, "slow")
    stored = portal_hash(r, "slow")
    print(
        f"\n[lapsed refresh lock] lock={LOCK_S}s oauth latency=1.0s results={results} "
        f"invalid_grants={sim.invalid_grants('slow')} version {version}->{stored['version']}"
    )
    assert results == {"first": Refresh.REFRESHED, "second": Refresh.ALREADY}
    assert sim.invalid_grants("slow") == 1, "the old fault happened..."
    assert "block_reason" not in stored, "...and did not park the portal"
    assert stored["access_token"] == sim.credentials("slow").access_token
    assert int(stored["version"]) == version + 1


def test_invalid_grant_while_the_other_refresh_is_still_out_waits_for_it(
    sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    # the OAuth server spends the token at once but answers 1 s later: the second refresher's
    # invalid_grant arrives before the first one's pair is stored
    sim.add_portal(PortalConfig(member_id="late"))
    sim.set_oauth_delay(1.0)
    _, _, results = _race(r, sim, redis_url, "late")
    print(f"\n[answer still out] results={results} invalid_grants={sim.invalid_grants('late')}")
    assert results == {"first": Refresh.REFRESHED, "second": Refresh.IN_PROGRESS}
    assert sim.invalid_grants("late") == 1
    assert "block_reason" not in portal_hash(r, "late")
    assert portal_hash(r, "late")["access_token"] == sim.credentials("late").access_token


def test_a_refresh_answer_lost_after_the_token_was_spent_parks_with_that_reason(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    # the OAuth server spends the token, then answers after the worker gave up on the call
    fleet.start(DELIVERY_OAUTH_TIMEOUT_S="0.5", DELIVERY_REFRESH_LOCK_TTL_S="1")
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="lost")).as_register_kwargs())
    wait_for(lambda: portal_hash(r, "lost").get("version"), what="registration")
    sim.set_oauth_delay(2.0)
    sim.expire_tokens("lost")
    p.confirm(**confirmation("lost", 1))
    wait_for(
        lambda: portal_hash(r, "lost").get("block_reason") == "REFRESH_ANSWER_LOST",
        timeout_s=30,
        what="parking",
    )
    # the spent token's answer is recorded when it goes out, after the worker gave up on it
    wait_for(lambda: len(sim.refresh_requests()) >= 2, what="both refresh requests")
    requests = sim.refresh_requests()
    outcomes = [x.outcome for x in sorted(requests, key=lambda x: x.started_at)]
    print(f"\n[refresh answer lost] refresh outcomes={outcomes} stats={stats(r)}")
    assert outcomes[0] == "success" and outcomes[-1] == "invalid_grant"
    assert stats(r).get("delivered", 0) == 0 and not r.hvals(Keys().dead_data)
    sim.set_oauth_delay(0.0)
    p.register_portal(**sim.issue_credentials("lost").as_register_kwargs())
    wait_for(lambda: stats(r).get("delivered") == 1, what="delivery after portal.register")
