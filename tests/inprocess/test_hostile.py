"""A hostile portal's answers in-process (b24sim/hostile.py: an adversary, not the platform):
each one is a counted failure of the portal with its own code, its items kept; a `SUCCESS`
with numbers no float holds is delivered, once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from b24sim import PortalConfig, Simulator
from tests.harness import dead_letters, portal_hash, stats
from tests.inprocess.conftest import GROUP, fill, register
from worker.flush.flow import flush
from worker.runtime import Runtime
from worker.store.keys import Keys

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
    assert r.hget(KEYS.meta(GROUP), "failures") == b"1", "counted"
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
