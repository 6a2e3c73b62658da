"""A worker that lacks the key a portal's tokens were sealed with (a DELIVERY_TOKEN_KEYS rollout)
defers the group with a backoff and a counter of its own: past DELIVERY_MAX_ATTEMPTS such
deferrals nothing is dead-lettered or parked, and the group flows once a worker with the key
takes it. Real Redis, the simulator over HTTP, the flow in-process."""

from __future__ import annotations

from collections.abc import Callable

import redis
from cryptography.fernet import Fernet

from b24sim import Simulator
from tests.harness import dead_letters, portal_hash, stats, wait_for
from tests.inprocess.conftest import GROUP, fill, register
from worker.flush.flow import flush
from worker.runtime import Runtime
from worker.store.keys import Keys

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def test_a_missing_key_defers_and_never_costs_a_confirmation(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    with_key = make_rt(token_keys=OLD_KEY, batch_size=3)
    register(with_key, sim)  # tokens sealed with OLD_KEY
    fill(with_key, 3)
    keyless = make_rt(token_keys=NEW_KEY, batch_size=3)  # a worker of the next rollout step
    limit = keyless.settings.max_attempts
    for deferred in range(1, limit + 3):  # past the attempt limit
        wait_for(lambda: flush(keyless, GROUP, "task") == "retry", 10, what="a deferral")
        assert int(portal_hash(r, GROUP.portal)["key_waits"]) == deferred
    meta = r.hgetall(Keys().meta(GROUP))
    assert int(meta.get(b"failures", 0)) == 0, "a missing key is never a failure"
    s = stats(r)
    assert s["token_key_missing"] == limit + 2 and s.get("dead_lettered", 0) == 0
    assert s.get("token_refresh_failures", 0) == 0
    assert dead_letters(r) == [] and "blocked_until" not in portal_hash(r, GROUP.portal)
    assert sim.accepted() == [], "nothing was sent without the token"

    wait_for(lambda: flush(with_key, GROUP, "task") == "delivered", 10, what="the delivery")
    assert sorted(int(a.im["message_id"]) for a in sim.accepted()) == [1, 2, 3]
    assert "key_waits" not in portal_hash(r, GROUP.portal), "the count ends with a delivery"
