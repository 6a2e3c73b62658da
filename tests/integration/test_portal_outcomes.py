"""Each row of the retry policy ends as DESIGN.md's table says, against the simulator."""

from __future__ import annotations

import json

import redis

from b24producer import Producer
from b24sim import Fault, PortalConfig, Simulator
from tests.harness import Fleet, confirmation, delivered_ids, producer, stats, wait_for
from worker.keys import Keys


def _start(
    fleet: Fleet,
    sim: Simulator,
    redis_url: str,
    *configs: PortalConfig,
    workers: int = 1,
    concurrency: int = 2,
    **env: str,
) -> Producer:
    for i in range(workers):
        fleet.start(concurrency=concurrency, beat=i == 0, **env)
    p = producer(redis_url)
    configs = configs or (PortalConfig(member_id="p1"),)
    for config in configs:
        p.register_portal(**sim.add_portal(config).as_register_kwargs())
    r = redis.Redis.from_url(redis_url)
    for config in configs:  # portal.register is a task too: wait until it has run
        wait_for(lambda c=config: r.exists(Keys().portal(c.member_id)), what="registration")
    r.close()
    return p


def _dead(r: redis.Redis) -> list[dict[str, object]]:
    return [json.loads(v) for v in r.hvals(Keys().dead_data)]


def _portal(r: redis.Redis, member_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(Keys().portal(member_id)).items()}


def test_throttled_503_backs_off_and_delivers(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(fleet, sim, redis_url)
    sim.inject(Fault(error="QUERY_LIMIT_EXCEEDED", count=3, portal="p1"))
    for i in range(5):
        p.confirm(**confirmation("p1", i + 1))
    wait_for(lambda: stats(r).get("delivered") == 5, what="delivery after 503s")
    assert stats(r)["api_error:QUERY_LIMIT_EXCEEDED"] == 3
    assert not _dead(r)


def test_transient_errors_retry_then_dead_letter_after_max_attempts(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(fleet, sim, redis_url)
    sim.inject(Fault(error="INTERNAL_SERVER_ERROR", count=1, portal="p1"))
    sim.inject(Fault(kind="drop", count=1, portal="p1"))
    sim.inject(Fault(kind="non_json", count=1, portal="p1"))
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: stats(r).get("delivered") == 1, what="delivery after 3 transient failures")
    assert not _dead(r)

    sim.inject(Fault(error="INTERNAL_SERVER_ERROR", portal="p1"))  # until cleared
    p.confirm(**confirmation("p1", 2))
    dead = wait_for(lambda: _dead(r), what="dead letter after max attempts")
    assert dead[0]["code"] == "INTERNAL_SERVER_ERROR" and dead[0]["message_id"] == "2"
    assert dead[0]["failures"] == 3 and dead[0]["attempts"] == 4  # DELIVERY_MAX_ATTEMPTS=4
    assert float(dead[0]["first_attempt_at"]) <= float(dead[0]["last_attempt_at"])  # type: ignore[arg-type]


def test_permanent_errors_dead_letter_at_once(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(fleet, sim, redis_url, PortalConfig(member_id="p1", connectors=["other"]))
    p.confirm(**confirmation("p1", 9))
    dead = wait_for(lambda: _dead(r), what="dead letter")
    assert dead[0]["code"] == "IMCONNECTOR_NO_CORRECT_PROVIDER" and dead[0]["attempts"] == 1
    assert dead[0]["group"] == "p1:myconnector:107"
    assert sim.counters("p1")["calls"] == 1


def test_expired_token_is_refreshed_once_and_retried(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(fleet, sim, redis_url)
    sim.expire_tokens("p1")
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: stats(r).get("delivered") == 1, what="delivery after refresh")
    assert sim.counters("p1")["refreshes"] == 1
    assert _portal(r, "p1")["source"] == "refresh"


def test_four_workers_hitting_expired_token_refresh_once(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(
        fleet,
        sim,
        redis_url,
        PortalConfig(member_id="p1", refresh_latency_s=0.3),
        workers=4,
        concurrency=1,
        DELIVERY_BATCH_SIZE="1",
    )
    sim.expire_tokens("p1")
    for line in range(1, 9):
        p.confirm(**confirmation("p1", line, line=line))
    wait_for(lambda: stats(r).get("delivered") == 8, what="8 deliveries")
    assert sim.counters("p1")["expired_token_401"] >= 2, "several flushes saw expired_token"
    assert sim.counters("p1")["refreshes"] == 1
    assert sim.counters("p1")["refresh_failures"] == 0


def test_revoked_refresh_token_parks_the_portal_until_register(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(fleet, sim, redis_url)
    sim.revoke_refresh("p1")
    sim.expire_tokens("p1")
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: _portal(r, "p1").get("block_reason") == "invalid_grant", what="parking")
    assert sim.counters("p1")["success"] == 0 and not _dead(r)
    assert "portal parked" in fleet.logs()
    p.register_portal(**sim.issue_credentials("p1").as_register_kwargs())
    wait_for(lambda: stats(r).get("delivered") == 1, what="delivery after re-registration")


def test_operation_time_limit_waits_until_reset(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(fleet, sim, redis_url)
    sim.inject(Fault(error="OPERATION_TIME_LIMIT", count=1, portal="p1"))
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: stats(r).get("delivered") == 1, what="delivery after the 429")
    assert stats(r)["api_error:OPERATION_TIME_LIMIT"] == 1 and not _dead(r)


def test_overload_parks_one_portal_and_not_the_other(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(
        fleet,
        sim,
        redis_url,
        PortalConfig(member_id="bad"),
        PortalConfig(member_id="ok"),
        DELIVERY_OVERLOAD_PARK_S="30",
    )
    sim.inject(Fault(kind="overload", portal="bad"))
    p.confirm(**confirmation("bad", 1))
    wait_for(lambda: _portal(r, "bad").get("block_reason") == "OVERLOAD_LIMIT", what="parking")
    for i in range(20):
        p.confirm(**confirmation("ok", 100 + i, line=1 + i % 4))
    wait_for(lambda: len(delivered_ids(sim, "ok")) == 20, timeout_s=10, what="healthy portal")
    assert sim.counters("bad")["calls"] == 1, "a parked portal is not called again"
    assert not _dead(r)


def test_no_auth_found_refreshes_once_and_parks_when_the_fresh_token_is_refused_too(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = _start(fleet, sim, redis_url)
    sim.inject(Fault(error="NO_AUTH_FOUND", count=1, portal="p1"))
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: stats(r).get("delivered") == 1, what="delivery after one refused token")
    assert sim.counters("p1")["refreshes"] == 1
    assert "block_reason" not in _portal(r, "p1")

    sim.inject(Fault(error="NO_AUTH_FOUND", portal="p1"))  # every token refused
    p.confirm(**confirmation("p1", 2))
    wait_for(lambda: _portal(r, "p1").get("block_reason") == "NO_AUTH_FOUND", what="parking")
    assert sim.counters("p1")["refreshes"] == 2, "one refresh per refusal, then parked"
    assert not _dead(r)
