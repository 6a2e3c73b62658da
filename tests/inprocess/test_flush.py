"""`pipeline.flush` in-process, one test per settle action of the retry policy (delivered,
retry, refresh, park, dead_letter), against the simulator's answers for each platform fact."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis
from structlog.testing import capture_logs

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import dead_letters, portal_hash, stats, wait_for
from tests.inprocess.conftest import GROUP, SentTasks, element, fill, register
from worker.flush.flow import flush
from worker.ingest.validation import registration
from worker.names import FLUSH_TASK, FLUSH_TICK_TASK
from worker.ops import records
from worker.runtime import Runtime
from worker.store.keys import Group, Keys

KEYS = Keys()


def _flush_until(rt: Runtime, result: str, timeout_s: float = 5.0) -> str:
    """Run the flush task's body as often as its triggers would, until it returns `result`."""
    return wait_for(lambda: (flush(rt, GROUP, "task") == result) and result, timeout_s, what=result)


def _buffered(
    make_rt: Callable[..., Runtime], sim: Simulator, n: int, *faults: Fault, **overrides: float
) -> Runtime:
    """Portal p1 registered, its next answers `faults`, a full batch of `n` in GROUP."""
    rt = make_rt(batch_size=n, **overrides)
    register(rt, sim)
    for fault in faults:
        sim.inject(fault)
    fill(rt, n)
    return rt


def test_delivered_drops_the_items_and_records_the_histograms(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _buffered(make_rt, sim, 3)
    assert flush(rt, GROUP, "task") == "delivered"
    assert sorted(int(a.im["message_id"]) for a in sim.accepted()) == [1, 2, 3]
    assert len({a.call_id for a in sim.accepted()}) == 1, "one call for the batch"
    s = stats(r)
    assert s["delivered"] == 3 and s["pending"] == 0
    assert s["batch_size_bucket:5"] == 1 and s["latency_s_bucket:0.25"] == 3
    assert not r.exists(KEYS.items(GROUP), KEYS.queue(GROUP), KEYS.leased(GROUP))
    assert r.zscore(KEYS.due, GROUP.id) is None, "nothing pending: not due"


def test_transient_errors_retry_with_backoff_then_dead_letter(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    rt = make_rt(batch_size=1)
    register(rt, sim)
    sim.inject(Fault(error="INTERNAL_SERVER_ERROR", count=1, portal="p1"))
    sim.inject(Fault(kind="drop", count=1, portal="p1"))
    sim.inject(Fault(kind="non_json", count=1, portal="p1"))
    trigger = rt.buffer.ingest(GROUP, "1", element(1)).trigger
    assert flush(rt, GROUP, trigger.task_id) == "retry", "the trigger's own flush task runs"
    assert r.hget(KEYS.meta(GROUP), "failures") == b"1"
    assert r.hget(KEYS.meta(GROUP), "not_before"), "the group's own backoff, not the portal's"
    assert r.zcard(KEYS.queue(GROUP)) == 1 and not r.exists(KEYS.leased(GROUP))
    retry = sent.calls[-1]
    assert (
        retry.name in (FLUSH_TASK, FLUSH_TICK_TASK)
        and retry.countdown
        and retry.task_id != trigger.task_id
    )
    _flush_until(rt, "delivered")  # after the drop and the non-JSON answer too
    assert stats(r)["delivered"] == 1 and not dead_letters(r)

    sim.inject(Fault(error="INTERNAL_SERVER_ERROR", portal="p1"))  # until cleared
    fill(rt, 1, first=2)
    _flush_until(rt, "dead_letter")
    dead = dead_letters(r)
    assert dead[0]["code"] == "INTERNAL_SERVER_ERROR" and dead[0]["message_id"] == "2"
    assert dead[0]["failures"] == 3 and dead[0]["attempts"] == 4  # max_attempts=4
    assert float(dead[0]["first_attempt_at"]) <= float(dead[0]["last_attempt_at"])
    assert stats(r)["dead_lettered"] == 1 and stats(r)["pending"] == 0


def test_permanent_errors_dead_letter_at_once_and_replay(
    rt: Runtime, sim: Simulator, r: redis.Redis
) -> None:
    register(rt, sim)
    sim.inject(Fault(error="ERROR_ARGUMENT", count=1, portal="p1"))
    fill(rt, 1, first=9)
    _flush_until(rt, "dead_letter")
    dead = dead_letters(r)
    assert dead[0]["code"] == "ERROR_ARGUMENT" and dead[0]["attempts"] == 1
    assert dead[0]["group"] == GROUP.id and sim.counters("p1")["calls"] == 1
    assert records.replay(rt) == 1 and not dead_letters(r)
    assert r.hexists(KEYS.items(GROUP), "9"), "replayed into its group"


def test_a_connector_without_a_provider_parks_that_connector_only(
    rt: Runtime, sim: Simulator, r: redis.Redis
) -> None:
    register(rt, sim, PortalConfig(member_id="p1", connectors=["other"]))
    fill(rt, 1, first=9)
    _flush_until(rt, "park_connector")
    parking = json.loads(portal_hash(r, "p1")["cpark:myconnector"])
    assert parking["reason"] == "IMCONNECTOR_NO_CORRECT_PROVIDER" and not dead_letters(r)
    assert flush(rt, GROUP, "task") == "wait", "the connector's groups wait"
    other = Group("p1", "other", 107)
    fill(rt, 1, group=other, first=10)
    assert wait_for(lambda: flush(rt, other, "task") == "delivered", what="the other connector")
    assert r.hexists(KEYS.items(GROUP), "9"), "the parked item is kept"


def test_throttled_drains_the_budget_and_retries_portal_wide(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _buffered(make_rt, sim, 5, Fault(error="QUERY_LIMIT_EXCEEDED", count=3, portal="p1"))
    assert flush(rt, GROUP, "task") == "retry"
    portal = portal_hash(r, "p1")
    assert portal["throttles"] == "1" and portal["block_reason"] == "QUERY_LIMIT_EXCEEDED"
    level = float(r.hget(KEYS.bucket("p1"), "level") or 0)
    assert level >= rt.settings.rate_burst - 1, "the budget starts from full"
    _flush_until(rt, "delivered")
    assert stats(r).get("delivered") == 5
    assert "throttles" not in portal_hash(r, "p1"), "a success resets the streak"
    assert stats(r)["api_error:QUERY_LIMIT_EXCEEDED"] == 3
    assert not dead_letters(r)


def test_operation_time_limit_retries_after_the_reset(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    fault = Fault(error="OPERATION_TIME_LIMIT", count=1, portal="p1")
    rt = _buffered(make_rt, sim, 1, fault, operation_limit_wait_s=0.1)
    assert flush(rt, GROUP, "task") == "retry"
    assert portal_hash(r, "p1")["block_reason"] == "OPERATION_TIME_LIMIT"
    _flush_until(rt, "delivered")
    assert stats(r)["api_error:OPERATION_TIME_LIMIT"] == 1 and not dead_letters(r)


def test_expired_token_is_refreshed_once_and_retried_at_once(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _buffered(make_rt, sim, 1)
    sim.expire_tokens("p1")
    assert flush(rt, GROUP, "task") == "refresh"
    assert sim.counters("p1")["refreshes"] == 1 and portal_hash(r, "p1")["source"] == "refresh"
    assert r.hget(KEYS.meta(GROUP), "failures") is None, "a refresh is not a failure"
    assert flush(rt, GROUP, "task") == "delivered"


def test_no_auth_found_refreshes_once_then_parks(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _buffered(make_rt, sim, 1, Fault(error="NO_AUTH_FOUND", count=1, portal="p1"))
    assert flush(rt, GROUP, "task") == "refresh"
    assert flush(rt, GROUP, "task") == "delivered", "one refused token: refreshed, delivered"
    assert sim.counters("p1")["refreshes"] == 1 and "block_reason" not in portal_hash(r, "p1")

    sim.inject(Fault(error="NO_AUTH_FOUND", portal="p1"))  # every token refused
    fill(rt, 1, first=2)
    assert flush(rt, GROUP, "task") == "refresh"
    with capture_logs() as logs:
        assert flush(rt, GROUP, "task") == "park"
    assert portal_hash(r, "p1")["block_reason"] == "NO_AUTH_FOUND"
    assert any(e["event"] == "portal parked" and e.get("alert") for e in logs)
    assert sim.counters("p1")["refreshes"] == 2, "one refresh per refusal, then parked"
    assert not dead_letters(r)


def test_a_revoked_refresh_token_parks_the_portal_until_register(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _buffered(make_rt, sim, 1)
    sim.revoke_refresh("p1")
    sim.expire_tokens("p1")
    with capture_logs() as logs:
        assert flush(rt, GROUP, "task") == "park"
    assert any(e["event"] == "portal parked" for e in logs)
    assert portal_hash(r, "p1")["block_reason"] == "invalid_grant"
    assert r.zscore(KEYS.due, GROUP.id) == 1e18, "parked: out of the sweep's reach"
    assert flush(rt, GROUP, "task") == "wait", "a parked portal is not called"
    assert sim.counters("p1")["success"] == 0 and not dead_letters(r)

    sim.revoke_refresh("p1", revoked=False)
    creds = sim.issue_credentials("p1").as_register_kwargs()
    rt.portals.register(registration(creds, rt.settings.endpoint_networks))
    assert rt.buffer.resume_portal("p1") == 1
    assert flush(rt, GROUP, "task") == "delivered"


def test_overload_parks_one_portal_and_not_the_other(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=5, overload_park_s=30.0)
    register(rt, sim, PortalConfig(member_id="p1"))
    register(rt, sim, PortalConfig(member_id="ok"))
    sim.inject(Fault(kind="overload", portal="p1"))
    fill(rt, 1)
    _flush_until(rt, "park")
    assert portal_hash(r, "p1")["block_reason"] == "OVERLOAD_LIMIT"
    healthy = [Group("ok", "myconnector", line) for line in range(1, 5)]
    for i in range(20):
        rt.buffer.ingest(healthy[i % 4], str(100 + i), element(100 + i))
    for group in healthy:
        assert flush(rt, group, "task") == "delivered", "another portal is not held up"
    assert len(sim.accepted("ok")) == 20
    assert flush(rt, GROUP, "task") == "wait"
    assert sim.counters("p1")["calls"] == 1, "a parked portal is not called again"
    assert not dead_letters(r)
