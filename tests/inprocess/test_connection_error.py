"""401 CONNECTION_ERROR (the portal could not reach its authorization server,
`rest/lib/oauth/auth.php`) in-process: `flush` against the real Redis and the simulator.

It is transient: the portal's groups back off and retry with no token refresh (our token is not
the problem), the portal is never parked for it, and the items are kept past
DELIVERY_MAX_ATTEMPTS, then delivered once the portal reaches its OAuth server again.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from b24sim import Fault, Simulator
from tests.harness import dead_letters, portal_hash, stats, wait_for
from tests.inprocess.conftest import GROUP, fill, register
from worker.flush.flow import flush
from worker.ops.parking import list_parked
from worker.runtime import Runtime
from worker.store.keys import Keys

KEYS = Keys()


def _connection_errors(sim: Simulator) -> int:
    return sum(1 for c in sim.calls("p1") if c.outcome == "CONNECTION_ERROR")


def test_a_portal_that_cannot_reach_its_oauth_server_keeps_its_items_and_delivers_later(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=3)  # DELIVERY_MAX_ATTEMPTS is 4 in the tests' settings
    register(rt, sim)
    fault = sim.inject(Fault(error="CONNECTION_ERROR", portal="p1"))  # until cleared
    fill(rt, 3)
    wanted = rt.settings.max_attempts + 3
    results: list[str] = []
    wait_for(
        lambda: results.append(flush(rt, GROUP, "task")) or _connection_errors(sim) >= wanted,
        10.0,
        what=f"{wanted} CONNECTION_ERROR answers",
    )
    assert "dead_letter" not in results and "park" not in results
    assert not dead_letters(r), "not dead-lettered before DELIVERY_MAX_AGE_S"
    assert list_parked(r, KEYS) == [], "a backoff, not a parking"
    assert portal_hash(r, "p1").get("block_reason") == "CONNECTION_ERROR"  # the portal waits
    assert sim.refresh_requests() == [] and "token_refreshes" not in stats(r), "no refresh"
    assert r.zcard(KEYS.queue(GROUP)) + r.zcard(KEYS.leased(GROUP)) == 3, "items kept"
    assert int(r.hget(KEYS.meta(GROUP), "failures") or 0) >= rt.settings.max_attempts

    sim.clear_faults(fault_id=fault)  # the portal reaches its OAuth server again
    wait_for(lambda: flush(rt, GROUP, "task") == "delivered", 10.0, what="delivery")
    assert sorted(int(a.im["message_id"]) for a in sim.accepted("p1")) == [1, 2, 3]
    assert stats(r)["delivered"] == 3 and stats(r)["pending"] == 0
    assert list_parked(r, KEYS) == []
    assert not dead_letters(r)
