"""Redis killed with `kill -9` mid-run and restarted, with AOF `appendfsync always` (Redis fsyncs
every write before it answers): every confirmation the producer saw accepted is delivered.

Before the reliable fetch, a message popped by BRPOP whose reply died with the connection
existed nowhere any more (2 of 4,000 lost in the issue's run). Now the pop and the record of its
holder are one script: a reply lost with the connection leaves the message recorded under a
holder id that the consumer retires, and it goes back when that id's heartbeat expires.
Recovery settings at their defaults; windows and backoffs shrunk.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from b24sim import PortalConfig, Simulator
from devtools.redis_local import LocalRedis
from tests.harness import Fleet, confirm_until_taken, confirmation, producer, stats, wait_for
from tests.reliability.util import (
    DEFAULT_RECOVERY,
    SCALE,
    alive,
    describe,
    pending_items,
    spawn,
    wait_ready,
)

TOTAL = 2000 * SCALE
PORTAL = "crash-always"


@pytest.fixture
def always_redis() -> Iterator[LocalRedis]:
    server = LocalRedis(appendfsync="always").start()
    yield server
    server.close()


def _produce(
    url: str, accepted: dict[int, float], errors: list[str], stop: threading.Event
) -> None:
    """Enqueue every id; one whose enqueue raised is retried (same id) until Redis answers."""
    p = producer(url)
    try:
        for n, mid in enumerate(range(1, TOTAL + 1)):
            item = confirmation(PORTAL, mid, line=1 + mid % 6)
            if confirm_until_taken(p, item, errors, stop):  # the crash window
                accepted[mid] = time.monotonic()
            if n % 50 == 49:
                time.sleep(0.1)
    finally:
        p.close()


@pytest.mark.slow
@pytest.mark.timeout(240 * SCALE)
def test_redis_kill_9_with_appendfsync_always_loses_nothing_accepted(
    always_redis: LocalRedis, sim: Simulator, tmp_path: Path
) -> None:
    url = always_redis.url
    fleet = Fleet(url, sim, tmp_path)
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        p = producer(url)
        creds = sim.add_portal(PortalConfig(member_id=PORTAL, rate_per_s=200, burst=1000))
        p.register_portal(**creds.as_register_kwargs())
        p.close()
        workers = [spawn(fleet, concurrency=2, beat=i == 0, **DEFAULT_RECOVERY) for i in range(2)]
        wait_ready(workers)
        accepted: dict[int, float] = {}
        errors: list[str] = []
        stop = threading.Event()
        thread = threading.Thread(target=_produce, args=(url, accepted, errors, stop), daemon=True)
        thread.start()
        wait_for(lambda: len(accepted) >= TOTAL // 2, 60 * SCALE, what="half enqueued")
        crashed_at = time.monotonic()
        always_redis.restart(kill=True)
        up_after = time.monotonic() - crashed_at
        thread.join(120 * SCALE)
        stop.set()
        assert len(accepted) == TOTAL, "the producer got every id in after the restart"
        expected = set(accepted)

        def delivered() -> bool:
            try:
                got = {int(a.im["message_id"]) for a in sim.accepted()}
                return expected <= got and pending_items(client) == 0
            except redis.RedisError:
                return False

        try:
            wait_for(delivered, timeout_s=90 * SCALE, interval_s=0.25, what="every id accepted")
        except AssertionError:
            missing = sorted(expected - {int(a.im["message_id"]) for a in sim.accepted()})
            print(f"\nmissing={len(missing)} first={missing[:10]} {describe(client)}")
            raise
        done_after = time.monotonic() - crashed_at
        counts = Counter(int(a.im["message_id"]) for a in sim.accepted())
        s = stats(client)
        print(
            f"\n[redis kill -9, appendfsync always] accepted={len(expected)} "
            f"delivered={len(counts)} lost={len(expected - set(counts))} "
            f"duplicates_sent={sum(c - 1 for c in counts.values())} "
            f"producer_errors={len(errors)} redis_up_after={up_after:.1f}s "
            f"all_delivered_after_crash={done_after:.1f}s "
            f"redelivered_confirms={s.get('coalesced', 0) + s.get('deduplicated', 0)} "
            f"workers_alive={sum(alive(w) for w in fleet.workers)}/{len(fleet.workers)}"
        )
        assert expected <= set(counts)
        assert all(alive(w) for w in fleet.workers), "workers reconnect on their own"
    finally:
        fleet.stop()
        client.close()
