"""Repeats of delivered confirmations (producers retry; Bitrix24 re-sends events whose handler
was slow) are not sent again within DELIVERY_DEDUP_WINDOW_S (default 600 s), and the memory the
window costs per delivered confirmation is measured.

A dead-lettered or still-pending item is not "delivered": a re-send of a dead-lettered one is
accepted and sent again; a re-send of a pending one coalesces with it (one call).
"""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import Fleet, confirmation, producer, stats, wait_for
from tests.reliability.util import SCALE
from worker.store.keys import Group, Keys

PORTAL = "dedup"
REPEATS = 200
GROUPS = 4


def _accepted(sim: Simulator) -> Counter[int]:
    return Counter(int(a.im["message_id"]) for a in sim.accepted(PORTAL))


@pytest.mark.slow
@pytest.mark.timeout(120 * SCALE)
def test_repeats_of_delivered_confirmations_are_not_sent_twice(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    p = producer(redis_url)
    creds = sim.add_portal(PortalConfig(member_id=PORTAL, rate_per_s=200, burst=1000))
    p.register_portal(**creds.as_register_kwargs())
    fleet.start(concurrency=2, beat=True)  # DELIVERY_DEDUP_WINDOW_S at its default
    ids = list(range(1, REPEATS * SCALE + 1))
    for mid in ids:
        p.confirm(**confirmation(PORTAL, mid, line=1 + mid % GROUPS))
    wait_for(lambda: len(_accepted(sim)) == len(ids), 60, what="the first copies delivered")
    for mid in ids:  # the producer retries every one of them
        p.confirm(**confirmation(PORTAL, mid, line=1 + mid % GROUPS))
    wait_for(lambda: stats(r).get("deduplicated", 0) == len(ids), 60, what="every repeat counted")
    # a dead-lettered confirmation is not "delivered": its re-send goes out
    sim.inject(Fault(error="ERROR_ARGUMENT", portal=PORTAL, count=1))
    p.confirm(**confirmation(PORTAL, 10_001, line=99))
    wait_for(lambda: stats(r).get("dead_lettered", 0) == 1, 30, what="one dead letter")
    p.confirm(**confirmation(PORTAL, 10_001, line=99))
    wait_for(lambda: _accepted(sim)[10_001] == 1, 30, what="the dead-lettered id re-sent")
    p.close()

    counts = _accepted(sim)
    sent_twice = sum(1 for mid in ids if counts[mid] > 1)
    memory = [
        r.memory_usage(Keys().delivered(Group(PORTAL, "myconnector", g))) or 0
        for g in range(1, GROUPS + 1)
    ]
    remembered = sum(
        int(r.zcard(Keys().delivered(Group(PORTAL, "myconnector", g))))
        for g in range(1, GROUPS + 1)
    )
    ttl = max(
        r.ttl(Keys().delivered(Group(PORTAL, "myconnector", g))) for g in range(1, GROUPS + 1)
    )
    print(
        f"\n[dedup window] delivered={len(ids)} repeats={len(ids)} sent_twice={sent_twice} "
        f"deduplicated={stats(r).get('deduplicated', 0)} remembered_ids={remembered} "
        f"memory={sum(memory)} B ({sum(memory) / max(1, remembered):.0f} B per delivered id "
        f"in {GROUPS} small groups) key_ttl={ttl}s dead_letter_resend_delivered=1"
    )
    assert sent_twice == 0
    assert stats(r).get("deduplicated", 0) == len(ids)
    assert 590 <= ttl <= 600, "the window's key expires with the window"


def test_memory_per_delivered_id_in_a_large_window(r: redis.Redis) -> None:
    """What DELIVERY_DEDUP_WINDOW_S costs at scale: one group's ZSET of N delivered ids, as
    settle.lua writes it (member = im.message_id, score = server time)."""
    key = Keys().delivered(Group(PORTAL, "myconnector", 1))
    figures = []
    for n in (100, 1_000, 10_000):
        r.delete(key)
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.zadd(key, {str(85_000_000 + i): 1_767_225_600.123456 + i / 100})
        pipe.execute()
        figures.append((n, (r.memory_usage(key) or 0) / n))
    r.delete(key)
    print("\n[dedup memory] " + " ".join(f"{n} ids: {per:.0f} B/id" for n, per in figures))
    assert all(per < 150 for _, per in figures)
