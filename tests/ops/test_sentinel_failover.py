"""Redis Sentinel failover under load: a real primary, a replica and three sentinels.

Confirmations flow through real workers (REDIS_URL in the sentinel:// form) to the simulator.
Replication is then cut for a moment (the replica stopped and its link closed: a partition),
the primary is SIGKILLed and the replica resumed; the sentinels promote it. Shown: the workers
reconnect to the promoted replica without a restart; with DELIVERY_REPLICA_ACKS=1 every ingest
acknowledged before the kill is delivered; at 0 (asynchronous replication) the loss is what
the replica had not received when the primary died, printed. The producer's own sends are
asynchronous either way: what they lose is printed too.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

import pytest
import redis

from b24producer import Producer
from b24sim import PortalConfig, Simulator
from devtools.redis_sentinel import MASTER, Node, SentinelCluster
from tests.harness import (
    Fleet,
    confirm_until_taken,
    confirmation,
    delivered_ids,
    sentinel_cluster,
    wait_for,
)
from worker.store.keys import Keys
from worker.transport.kombu_redis.recovery import ALIVE_PREFIX

TOTAL = 300
STALL_S = 0.7
_SUCCEEDED = re.compile(r"Task delivery\.confirm\[([0-9a-f-]+)\] succeeded in ([0-9.e-]+)s")


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    yield from sentinel_cluster(
        "to run a primary, a replica and sentinels", down_after_ms=1000, failover_timeout_ms=4000
    )


class Load:
    """A producer thread: every id in order, each retried (same id) until the broker takes it."""

    def __init__(self, url: str) -> None:
        self.producer = Producer(url, sentinel_master=MASTER)
        self.returned: dict[int, float] = {}
        #: when each id's first send began: a send that began before the primary died may have
        #: reached it and have its reply read later (the reply was in the socket already)
        self.began: dict[int, float] = {}
        self.task_ids: dict[str, int] = {}
        self.errors: list[str] = []  # each failed enqueue's exception class
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for mid in range(1, TOTAL + 1):
            item = confirmation("sen", mid, line=1 + mid % 4)
            self.began[mid] = time.monotonic()
            task_id = confirm_until_taken(self.producer, item, self.errors, self.stop)  # failover
            if task_id is not None:
                self.task_ids[task_id] = mid
                self.returned[mid] = time.monotonic()
            time.sleep(0.012)  # ~80/s: the fleet keeps up, so acknowledged means ingested


def _offset(node: Node) -> int:
    return int(node.client().info("replication")["master_repl_offset"])


def _acknowledged(fleet: Fleet, load: Load) -> tuple[set[int], list[float]]:
    """Ids whose ingest a worker completed (its task succeeded), and the ingest run times."""
    ids, runtimes = set(), []
    for task_id, seconds in _SUCCEEDED.findall(fleet.logs()):
        if task_id in load.task_ids:
            ids.add(load.task_ids[task_id])
            runtimes.append(float(seconds))
    return ids, runtimes


def _diagnose(fleet: Fleet, promoted: Node, first_after: int, delivered: list[int]) -> None:
    """What the new primary holds and what the workers last logged, for a run whose first
    delivery through the new primary did not come (it takes about 7 s)."""
    try:
        c = promoted.client(timeout_s=5)
        state = (
            f"celery={c.llen('celery')} flush={c.llen('flush')} unacked={c.hlen('unacked')} "
            f"due={c.zrange(Keys().due, 0, 20, withscores=True)} "
            f"ticks={c.zrange(Keys().ticks, -5, -1, withscores=True)} "
            f"stats={c.hgetall(Keys().stats)}"
        )
    except redis.RedisError as exc:
        state = f"the new primary did not answer: {exc!r}"
    print(
        f"\n[sentinel failover stalled] first id after the kill {first_after}; "
        f"delivered {len(delivered)}, the last {sorted(delivered)[-5:]}; {state}"
    )
    for worker in fleet.workers:
        lines = worker.log().splitlines()
        print(f"--- {worker.name} (alive: {worker.process.poll() is None}), last 40 lines:")
        print("\n".join(lines[-40:]))


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("replica_acks", [0, 1])
def test_failover_to_the_replica_keeps_what_was_acknowledged(
    cluster: SentinelCluster, sim: Simulator, tmp_path: Path, replica_acks: int
) -> None:
    fleet = Fleet(
        cluster.url,
        sim,
        tmp_path,
        env={"REDIS_SENTINEL_MASTER": MASTER, "DELIVERY_REPLICA_ACKS": str(replica_acks)},
    )
    load = Load(cluster.url)
    primary, replica = cluster.nodes["primary"], cluster.nodes["replica"]
    try:
        load.producer.register_portal(
            **sim.add_portal(
                PortalConfig(member_id="sen", rate_per_s=500, burst=1000)
            ).as_register_kwargs()
        )
        workers = [fleet.start(concurrency=2, beat=i == 0) for i in range(2)]
        load.thread.start()
        wait_for(lambda: len(load.returned) >= TOTAL // 3, 30, what="a third enqueued")
        _, healthy_runtimes = _acknowledged(fleet, load)
        # the sentinel transport consumes with the reliable fetch
        # (worker/transport/kombu_redis/channel.py), not kombu's BRPOP: each consumer keeps a
        # heartbeat key on the master
        wait_for(
            lambda: any(primary.client().scan_iter(f"{ALIVE_PREFIX}*", 100)),
            10,
            what="the consumers' heartbeat keys on the master",
        )

        # Cut replication (a partition): the replica is stopped and its link closed, so what
        # the primary writes from here on exists only there; the primary goes on serving.
        cut_at = time.monotonic()
        cluster.signal("replica", signal.SIGSTOP)
        cut_offset = _offset(primary)
        primary.client().client_kill_filter(_type="replica")
        time.sleep(STALL_S)  # the window being measured, not a wait for a condition
        acked, _ = _acknowledged(fleet, load)
        returned = dict(load.returned)
        lag_bytes = _offset(primary) - cut_offset
        primary.process.kill()
        primary.process.wait(10)  # dead, not only signalled: nothing reaches it from here on
        killed_at = time.monotonic()
        cluster.signal("replica", signal.SIGCONT)

        wait_for(lambda: cluster.master_port() == replica.port, 30, what="the promotion")
        promoted_s = time.monotonic() - killed_at
        load.thread.join(timeout=60)
        assert len(load.returned) == TOTAL, "the producer got every id in after the failover"
        # sent after the kill: begun once the old primary was gone, so only the new one has it
        after = {mid for mid, t in load.began.items() if t > killed_at}
        first_after = min(after)
        # generous: the figure is printed, not promised; a loaded machine can take a while to
        # re-elect and reconnect every consumer
        try:
            wait_for(
                lambda: first_after in delivered_ids(sim),
                60,
                what="a delivery through the new primary",
            )
        except AssertionError:
            _diagnose(fleet, replica, first_after, delivered_ids(sim))
            raise
        reconnected_s = time.monotonic() - killed_at
        client = replica.client(timeout_s=5)

        def settled() -> bool:
            delivered = set(delivered_ids(sim))
            if after | acked <= delivered and set(range(1, TOTAL + 1)) <= delivered:
                return True
            pending = sum(int(client.hlen(k)) for k in client.scan_iter("b24d:*:items", 500))
            return (
                after <= delivered
                and pending == 0
                and client.llen("celery") == 0
                and client.hlen("unacked") == 0
            )

        wait_for(settled, 60, interval_s=0.25, what="the fleet to settle on the new primary")
        delivered = set(delivered_ids(sim))
        lost_acked = acked - delivered
        lost_returned = set(returned) - delivered
        in_stall = {mid for mid, t in returned.items() if t >= cut_at}
        # sent before the cut, replicated, and still lost: with the reliable fetch none (the
        # queue pop and the unacked record are one script, so they replicate together)
        in_flight = lost_returned - in_stall
        # begun before the kill, returned after it: the old primary or the new one took it
        across = {mid for mid, t in load.returned.items() if t > killed_at} - after
        print(
            f"\n[sentinel failover, DELIVERY_REPLICA_ACKS={replica_acks}] "
            f"replication cut {STALL_S}s before the kill ({lag_bytes} bytes unreplicated); "
            f"promoted after "
            f"{promoted_s:.1f}s, first delivery through it after {reconnected_s:.1f}s; "
            f"ingests acknowledged before the kill {len(acked)}, lost {len(lost_acked)}; "
            f"producer sends returned before the kill {len(returned)}, lost "
            f"{len(lost_returned)} ({len(in_stall)} sent during the cut, "
            f"{len(lost_returned & in_stall)} of them lost; {len(in_flight)} of those sent "
            f"before the cut lost; {len(across)} begun before the kill and returned after it, "
            f"{len(across - delivered)} of them lost); producer errors "
            f"{len(load.errors)}; ingest run time median {1000 * median(healthy_runtimes):.2f} ms "
            f"(before the cut); workers alive "
            f"{sum(w.process.poll() is None for w in workers)}/{len(workers)}"
        )
        assert all(w.process.poll() is None for w in workers), "no worker exited"
        assert after <= delivered, "everything sent after the failover is delivered"
        assert not in_flight, f"sent before the cut and lost: {sorted(in_flight)}"
        if replica_acks:
            assert not lost_acked, "an ingest acknowledged after WAIT survives the primary"
    finally:
        load.stop.set()
        load.producer.close()
        fleet.stop()


def test_a_sentinel_url_needs_the_master_name() -> None:
    from worker.errors import SettingsError
    from worker.settings import Settings

    url = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/0"
    with pytest.raises(SettingsError, match="REDIS_SENTINEL_MASTER is required"):
        Settings.from_env({"REDIS_URL": url})
    assert Settings.from_env({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "m"}).redis_url == url
    with pytest.raises(SettingsError, match="REDIS_URL"):
        Settings.from_env({"REDIS_URL": "sentinel://a:1/0;sentinel://b:2/3"})
    from worker.transport.sentinel import connect

    client = connect("sentinel://127.0.0.1:9/0", "m", timeout_s=0.5)
    with pytest.raises(redis.ConnectionError):  # nothing listens: no master to be found
        client.ping()
