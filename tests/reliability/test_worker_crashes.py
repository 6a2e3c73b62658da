"""SIGKILL worker processes (main or pool child) at random moments while confirmations flow:
nothing is lost; duplicates are only resends of batches that were in flight."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
import redis

from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, WorkerProcess, confirmation, producer, stats, wait_for
from tests.reliability.util import SCALE, alive, pending_items, spawn, wait_ready
from worker.store.keys import Keys

PORTALS = ("crash-a", "crash-b", "crash-c")
# The issue asks for 10,000 confirmations; 2,000 keeps `make test` at a few minutes on two
# cores. `make chaos` (CHAOS_SCALE=5) runs the full 10,000.
TOTAL = 2000 * SCALE
KILLS = 4


def _produce(redis_url: str, ids: list[int], done: threading.Event, sent: list[int]) -> None:
    p = producer(redis_url)
    try:
        for n, mid in enumerate(ids):
            p.confirm(**confirmation(PORTALS[mid % 3], mid, line=1 + (mid // 3) % 4))
            sent.append(mid)
            if n % 50 == 49:
                time.sleep(0.1)  # spread the load over the kills
    finally:
        p.close()
        done.set()


def _kill_one(rng: random.Random, fleet: Fleet, beat_holder: list[WorkerProcess]) -> str:
    """SIGKILL a random live process of the fleet; replace a dead worker with a new one."""
    live = [w for w in fleet.workers if alive(w)]
    victim = rng.choice(live)
    children = victim.pool_pids()
    if children and rng.random() < 0.5:
        pid = rng.choice(children)
        os.kill(pid, signal.SIGKILL)  # the worker's main process forks a new pool child
        return f"pool child {pid} of {victim.name}"
    victim.kill()
    had_beat = victim is beat_holder[0]
    replacement = spawn(fleet, concurrency=2, beat=had_beat)
    if had_beat:
        beat_holder[0] = replacement
    wait_ready([replacement])
    return f"main {victim.process.pid} of {victim.name}{' (beat)' if had_beat else ''}"


@pytest.mark.slow
@pytest.mark.timeout(240 * SCALE)
def test_sigkilled_workers_lose_nothing(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    rng = random.Random(20240611)
    p = producer(redis_url)
    for mid in PORTALS:
        creds = sim.add_portal(PortalConfig(member_id=mid, rate_per_s=200, burst=1000))
        p.register_portal(**creds.as_register_kwargs())
    workers = [spawn(fleet, concurrency=2, beat=i == 0) for i in range(3)]
    wait_ready(workers)
    beat_holder = [workers[0]]
    ids = list(range(1, TOTAL + 1))
    sent: list[int] = []
    done = threading.Event()
    thread = threading.Thread(target=_produce, args=(redis_url, ids, done, sent), daemon=True)
    started = time.monotonic()
    thread.start()
    kills = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.5, 2.5))  # chaos: a random moment, not a wait
        kills.append(_kill_one(rng, fleet, beat_holder))
    thread.join(timeout=120 * SCALE)
    assert done.is_set() and len(sent) == TOTAL, "the producer finished"
    expected = set(ids)

    def drained() -> bool:
        got = {int(a.im["message_id"]) for a in sim.accepted()}
        return expected <= got and pending_items(r) == 0

    # reserved-but-unacked confirm tasks of a killed worker return after the visibility timeout
    try:
        wait_for(drained, timeout_s=150 * SCALE, interval_s=0.25, what="every id accepted")
    except AssertionError:
        got = {int(a.im["message_id"]) for a in sim.accepted()}
        missing = sorted(expected - got)
        print(
            f"\n[worker crashes] missing={len(missing)} first={missing[:10]} "
            f"pending_items={pending_items(r)} stats={stats(r)} "
            f"queues={{'celery': {r.llen('celery')}, 'flush': {r.llen('flush')}}} "
            f"unacked={r.hlen('unacked')} due={r.zrange(Keys().due, 0, -1, withscores=True)}"
        )
        for k in kills:
            print(f"  killed {k}")
        raise
    elapsed = time.monotonic() - started
    delivered = [int(a.im["message_id"]) for a in sim.accepted()]
    counts = Counter(delivered)
    lost = expected - set(counts)
    duplicates = sum(c - 1 for c in counts.values())
    s = stats(r)
    print(
        f"\n[worker crashes] enqueued={TOTAL} delivered={len(counts)} lost={len(lost)} "
        f"duplicates={duplicates} kills={len(kills)} leases_expired={s.get('leases_expired', 0)} "
        f"ingested={s.get('ingested')} coalesced={s.get('coalesced', 0)} "
        f"dead={s.get('dead_lettered', 0)} elapsed={elapsed:.1f}s"
    )
    for k in kills:
        print(f"  killed {k}")
    assert not lost
    assert s.get("dead_lettered", 0) == 0
    assert set(counts) == expected, "nothing delivered that was not enqueued"
