"""A portal with pending confirmations but no registration is parked in all but name: nothing
goes out until portal.register. `list_parked` (and `b24-delivery parked`) lists it with reason
`unregistered`, as the exporter's b24d_parked_groups counts it, and stops once it registers."""

from __future__ import annotations

import redis

from b24sim import Simulator
from tests.inprocess.conftest import GROUP, fill, register
from worker.ops.parking import UNREGISTERED, list_parked
from worker.runtime import Runtime
from worker.store.keys import Group, Keys


def test_pending_confirmations_of_an_unregistered_portal_are_listed(
    rt: Runtime, sim: Simulator, r: redis.Redis
) -> None:
    other_line = Group(GROUP.portal, GROUP.connector, GROUP.line + 1)
    fill(rt, 3)
    fill(rt, 2, other_line, first=10)
    (parked,) = list_parked(r, Keys())
    assert parked["portal"] == GROUP.portal and parked["connector"] is None
    assert parked["reason"] == UNREGISTERED
    assert parked["pending"] == 5
    assert parked["until"] == "portal.register"
    assert isinstance(parked["since"], float)

    register(rt, sim)
    assert [p for p in list_parked(r, Keys()) if p["reason"] == UNREGISTERED] == []


def test_nothing_is_listed_for_a_fleet_without_pending_items(r: redis.Redis) -> None:
    assert list_parked(r, Keys()) == []
