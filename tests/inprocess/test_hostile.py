"""A hostile portal's answers in-process (b24sim/hostile.py: an adversary, not the platform):
each one is a counted failure of the portal with its own code, its items kept; a `SUCCESS`
with numbers no float holds is delivered, once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from b24sim import PortalConfig, Simulator
from tests.harness import dead_letters, portal_hash, stats, wait_for
from tests.inprocess.conftest import GROUP, fill, register
from worker.flush import request
from worker.flush.flow import flush
from worker.ingest.validation import registration
from worker.ops.parking import unpark
from worker.runtime import Runtime
from worker.store.keys import Group, Keys
from worker.store.scripts import PARKED

KEYS = Keys()

#: each replacing kind, and the code its answer is counted under
KINDS = {
    "gzip_bomb": "ANSWER_TOO_LARGE",
    "drip": "ANSWER_TOO_SLOW",
    "deep_json": "ANSWER_MALFORMED",
    "bare_number": "ANSWER_MALFORMED",
}


def _hostile(make_rt: Callable[..., Runtime], sim: Simulator, kind: str, n: int = 3) -> Runtime:
    # a 1.5 s total deadline: the drip's answer would take 5 minutes
    rt = make_rt(batch_size=n, http_total_timeout_s=1.5)
    register(rt, sim, PortalConfig(member_id=GROUP.portal, hostile=kind))
    fill(rt, n)
    return rt


@pytest.mark.parametrize(("kind", "code"), KINDS.items())
def test_a_rule_breaking_answer_is_a_counted_failure_with_its_items_kept(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, kind: str, code: str
) -> None:
    rt = _hostile(make_rt, sim, kind)
    assert flush(rt, GROUP, "task") == "retry"
    s = stats(r)
    assert s["calls:bad_answer"] == 1 and s[f"api_error:{code}"] == 1, s
    assert portal_hash(r, GROUP.portal)["bad_answers"] == "1", "counted on the portal"
    assert r.hget(KEYS.meta(GROUP), "failures") is None, "never towards a dead letter"
    assert r.zcard(KEYS.queue(GROUP)) == 3 and not dead_letters(r), "items kept"
    assert sim.accepted() == [] and sim.counters(GROUP.portal)["hostile_answers"] == 1


def test_a_success_with_numbers_no_float_holds_is_delivered_once(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _hostile(make_rt, sim, "bad_numbers")
    assert flush(rt, GROUP, "task") == "delivered"
    assert sorted(int(a.im["message_id"]) for a in sim.accepted()) == [1, 2, 3]
    assert stats(r)["delivered"] == 3 and not r.exists(KEYS.queue(GROUP))
    # the time block was advice: its reset time of 1e17 was not kept
    assert "operating_reset_at" not in portal_hash(r, GROUP.portal)
    assert flush(rt, GROUP, "task") != "delivered" and len(sim.accepted()) == 3, "sent once"


def test_an_unknown_error_code_is_counted_as_other(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    from b24sim import Fault

    rt = make_rt(batch_size=1)
    register(rt, sim)
    sim.inject(Fault(error="A_CODE_OF_MY_CHOOSING_1", status=500, portal=GROUP.portal))
    fill(rt, 1)
    assert flush(rt, GROUP, "task") == "retry"
    s = stats(r)
    assert s["api_error:OTHER"] == 1
    assert not [k for k in s if "MY_CHOOSING" in k], "no field a portal chose"


def _park(rt: Runtime, timeout_s: float = 10.0) -> list[str]:
    """Run the flush as often as its triggers would until it parks the portal; what each
    flush that made a call returned."""
    results: list[str] = []

    def step() -> bool:
        result = str(flush(rt, GROUP, "task"))
        if result in ("retry", "park"):
            results.append(result)
        return result == "park"

    wait_for(step, timeout_s, what="the portal parked")
    return results


@pytest.mark.parametrize(("kind", "code"), KINDS.items())
def test_bad_answers_in_a_row_park_the_portal_with_its_items_kept(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, kind: str, code: str
) -> None:
    rt = _hostile(make_rt, sim, kind)
    assert _park(rt) == ["retry", "retry", "park"]  # DELIVERY_MAX_BAD_ANSWERS=3
    portal = portal_hash(r, GROUP.portal)
    assert float(portal["blocked_until"]) >= PARKED and portal["block_reason"] == code
    assert portal["bad_answers"] == "3"
    assert r.zcard(KEYS.queue(GROUP)) == 3 and not dead_letters(r), "kept, never dead-lettered"
    assert sim.counters(GROUP.portal)["calls"] == 3, "no call after the third"
    assert stats(r)["calls:bad_answer"] == 3


def test_register_reopens_but_keeps_the_count_and_unpark_clears_it(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _hostile(make_rt, sim, "bare_number")
    _park(rt)
    # the hostile portal installs the app again: reopened, but one more bad answer parks it
    creds = sim.issue_credentials(GROUP.portal)
    rt.portals.register(registration(creds.as_register_kwargs(), rt.settings.endpoint_networks))
    assert "blocked_until" not in portal_hash(r, GROUP.portal)
    assert _park(rt) == ["park"]
    # the operator's unpark clears the count: the portal gets its three chances again
    unpark(r, KEYS, GROUP.portal)
    assert "bad_answers" not in portal_hash(r, GROUP.portal)
    sim.set_hostile(GROUP.portal, None)
    wait_for(lambda: flush(rt, GROUP, "task") == "delivered", 5, what="delivered")
    assert len(sim.accepted()) == 3


def test_a_good_answer_resets_the_count(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _hostile(make_rt, sim, "deep_json", n=1)
    assert flush(rt, GROUP, "task") == "retry"
    assert portal_hash(r, GROUP.portal)["bad_answers"] == "1"
    sim.set_hostile(GROUP.portal, None)
    wait_for(lambda: flush(rt, GROUP, "task") == "delivered", 5, what="delivered")
    assert "bad_answers" not in portal_hash(r, GROUP.portal)


def test_while_bad_answers_are_fresh_the_portal_has_one_call_in_flight(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = _hostile(make_rt, sim, "bare_number", n=1)
    other = Group(GROUP.portal, "myconnector", 108)
    fill(rt, 1, group=other, first=50)
    assert flush(rt, GROUP, "task") == "retry"
    sim.set_hostile(GROUP.portal, None)
    r.hdel(KEYS.portal(GROUP.portal), "blocked_until")  # its backoff over
    first = rt.buffer.begin(GROUP, "t1")
    assert first.leases, "one call"
    second = rt.buffer.begin(other, "t2")
    assert not second.leases, "not a second one while the first is out"


def test_an_exception_while_calling_or_judging_is_a_counted_bad_answer(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = make_rt(batch_size=1)
    register(rt, sim)
    fill(rt, 1)

    def explode(*_: object, **__: object) -> None:
        raise ZeroDivisionError("a bug, or an answer no judge foresaw")

    monkeypatch.setattr(request, "send", explode)
    assert flush(rt, GROUP, "task") == "retry"
    assert portal_hash(r, GROUP.portal)["bad_answers"] == "1"
    assert stats(r)["api_error:ANSWER_UNJUDGED"] == 1
    assert r.zcard(KEYS.queue(GROUP)) == 1 and not r.exists(KEYS.leased(GROUP))


def test_a_lease_that_expires_without_a_settle_counts_and_ends_in_a_dead_letter(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=1)  # DELIVERY_MAX_ATTEMPTS=4 in the tests
    register(rt, sim)
    fill(rt, 1)
    for died in range(1, 5):  # four flushers die holding its lease
        begun = rt.buffer.begin(GROUP, "task")
        assert begun.leases, died
        r.delete(KEYS.lease(GROUP))  # the flusher died: its lease ran out, no settle
        r.zremrangebyscore(KEYS.inflight(GROUP.portal), "-inf", "+inf")
    assert flush(rt, GROUP, "task") == "dead_letter"
    (dead,) = dead_letters(r)
    assert dead["code"] == "LEASE_EXPIRED" and sim.accepted() == []
