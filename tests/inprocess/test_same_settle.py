"""One settle path: a direct call and a `batch` request reach the same outcome for the same
answer. An endpoint the rules refuse parks the portal with ENDPOINT_REFUSED on both (before
this release a `batch` request dead-lettered its groups for it); a 503 OVERLOAD_LIMIT parks it
on both. Each case runs once with one ready group (a direct call) and once with two (packed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from b24sim import Fault, Simulator
from tests.harness import dead_letters, portal_hash
from tests.inprocess.conftest import GROUP, fill, register
from worker.flush.flow import flush
from worker.runtime import Runtime
from worker.store.keys import Group, Keys

KEYS = Keys()
OTHER = Group(GROUP.portal, GROUP.connector, 108)


def _ready(make_rt: Callable[..., Runtime], sim: Simulator, groups: int) -> Runtime:
    rt = make_rt(batch_size=1, packing="batch")
    register(rt, sim)
    fill(rt, 1)
    if groups == 2:
        fill(rt, 1, group=OTHER, first=2)
    return rt


@pytest.mark.parametrize(("groups", "result"), [(1, "park"), (2, "packed")])
def test_a_refused_endpoint_parks_the_portal_on_both_paths(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, groups: int, result: str
) -> None:
    rt = _ready(make_rt, sim, groups)
    # plain http to a host that is not loopback: the endpoint rules refuse it (no call is made)
    r.hset(KEYS.portal(GROUP.portal), "client_endpoint", "http://portal.example/rest/")
    assert flush(rt, GROUP, "t") == result
    parked = portal_hash(r, GROUP.portal)
    assert parked["block_reason"] == "ENDPOINT_REFUSED" and float(parked["blocked_until"]) >= 1e18
    assert not dead_letters(r) and sim.counters(GROUP.portal).get("calls", 0) == 0
    for group in (GROUP, OTHER)[:groups]:
        assert r.zcard(KEYS.queue(group)) == 1, "its items kept"


@pytest.mark.parametrize(("groups", "result"), [(1, "park"), (2, "packed")])
def test_an_overloaded_portal_is_parked_on_both_paths(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, groups: int, result: str
) -> None:
    rt = _ready(make_rt, sim, groups)
    sim.inject(Fault(kind="overload", portal=GROUP.portal, count=1))
    assert flush(rt, GROUP, "t") == result
    assert portal_hash(r, GROUP.portal)["block_reason"] == "OVERLOAD_LIMIT"
    assert not dead_letters(r)
