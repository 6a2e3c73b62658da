"""Recovery bounds at the DEFAULT recovery settings (lease, sweep, visibility timeout, consumer
heartbeat), on each broker: 4,000 confirmations to 3 portals (one answers in 0.5 s, so kills
catch calls in flight), 4 SIGKILLs (two pool children, two main processes holding reserved
messages), the last one right after the producer finished.

- Redis: nothing lost; everything delivered within 30 s of the last kill (a killed main
  process's reserved messages come back when its heartbeat expires, DELIVERY_CONSUMER_TTL_S).
- RabbitMQ, plus a broker crash (kill -9) and restart mid-run: nothing lost; everything
  delivered within 10 s of the last kill (the broker requeues a dead connection's messages at
  once; a killed flusher's lease expires within DELIVERY_LEASE_TTL_S).

Windows and backoffs stay shrunk (FAST_ENV); only the settings the bounds depend on are reset
to their defaults. The beat worker is never killed (one beat runs the sweep; its own death is
beside the point here).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from b24sim import Fault, PortalConfig, Simulator
from devtools.rabbitmq_local import LocalRabbitMQ
from tests.harness import (
    Fleet,
    WorkerProcess,
    confirm_until_taken,
    confirmation,
    producer,
    stats,
    wait_for,
)
from tests.reliability.util import (
    DEFAULT_RECOVERY,
    SCALE,
    describe,
    pending_items,
    spawn,
    wait_ready,
)

PORTALS = ("fr-a", "fr-b", "fr-c")
TOTAL = 4000 * SCALE
#: what the issue promises, measured from the last kill
REDIS_BOUND_S = 30.0
AMQP_BOUND_S = 10.0


@dataclass
class Run:
    sent: dict[int, float] = field(default_factory=dict)  # id -> when the producer returned
    producer_errors: list[str] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    held: dict[int, int] = field(default_factory=dict)  # killed main pid -> messages it held
    restored_after: dict[int, float] = field(default_factory=dict)  # pid -> s until put back
    done: threading.Event = field(default_factory=threading.Event)


def _produce(url: str, run: Run) -> None:
    """Enqueue every id at a steady pace; an enqueue that raised is retried with the same id."""
    p = producer(url)
    try:
        for n, mid in enumerate(range(1, TOTAL + 1)):
            item = confirmation(PORTALS[mid % 3], mid, line=1 + (mid // 3) % 4)
            # (through a broker restart)
            confirm_until_taken(p, item, run.producer_errors, backoff_s=0.2)
            run.sent[mid] = time.monotonic()
            if n % 50 == 49:
                time.sleep(0.12)  # ~300/s: the fleet keeps up, so the bound measures recovery
    finally:
        p.close()
        run.done.set()


def _holder_prefix(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:"


def _held(r: redis.Redis, pid: int) -> int:
    prefix = _holder_prefix(pid)
    return sum(1 for h in r.hvals("unacked_holders") if h.decode().startswith(prefix))


def _kill_child(victim: WorkerProcess, run: Run) -> None:
    child = wait_for(victim.pool_pids, 10, what=f"{victim.name}'s pool")[0]
    os.kill(child, signal.SIGKILL)  # the main process requeues its task, forks a new child
    run.kills.append(f"pool child {child} of {victim.name}")


def _kill_main(fleet: Fleet, victim: WorkerProcess, run: Run, r: redis.Redis | None) -> float:
    """SIGKILL a worker's main process and its pool; start a replacement. Returns when."""
    pid = victim.process.pid
    killed_at = time.monotonic()
    victim.kill()
    if r is not None:  # Redis broker: what the dead consumer still held
        run.held[pid] = _held(r, pid)
    run.kills.append(f"main {pid} of {victim.name} (holding {run.held.get(pid, '?')})")
    spawn(fleet, concurrency=2, **DEFAULT_RECOVERY)
    return killed_at


def _watch_restores(
    r: redis.Redis, run: Run, started: dict[int, float], stop: threading.Event
) -> None:
    """Note when each killed main process's holder records are gone (messages put back)."""
    while not stop.wait(0.2):
        for pid, at in list(started.items()):
            if pid not in run.restored_after and _held(r, pid) == 0:
                run.restored_after[pid] = time.monotonic() - at


def _scenario(
    fleet: Fleet,
    sim: Simulator,
    r: redis.Redis,
    broker_url: str,
    restart: Callable[[], None] | None,
) -> tuple[Run, float, dict[str, int]]:
    p = producer(broker_url)
    for mid in PORTALS:
        creds = sim.add_portal(PortalConfig(member_id=mid, rate_per_s=200, burst=1000))
        p.register_portal(**creds.as_register_kwargs())
    p.close()
    # one slow portal: its calls are in flight long enough for a kill to catch a live lease
    sim.inject(Fault(kind="latency", latency_s=0.5, portal=PORTALS[2]))
    beat = spawn(fleet, concurrency=2, beat=True, **DEFAULT_RECOVERY)
    victims = [spawn(fleet, concurrency=2, **DEFAULT_RECOVERY) for _ in range(2)]
    wait_ready([beat, *victims])
    run = Run()
    redis_broker = restart is None
    thread = threading.Thread(target=_produce, args=(broker_url, run), daemon=True)
    thread.start()

    def at(share: float) -> None:
        wait_for(lambda: len(run.sent) >= share * TOTAL, 90 * SCALE, what=f"{share:.0%} sent")

    kill_times: dict[int, float] = {}
    stop_watching = threading.Event()
    args = (r, run, kill_times, stop_watching)
    watcher = threading.Thread(target=_watch_restores, args=args, daemon=True)
    at(0.2)
    _kill_child(victims[0], run)
    at(0.4)
    killed_at = _kill_main(fleet, victims[0], run, r if redis_broker else None)
    kill_times[victims[0].process.pid] = killed_at
    if redis_broker:
        watcher.start()
    if restart is not None:
        at(0.5)
        began = time.monotonic()
        restart()
        run.kills.append(f"broker killed (kill -9) and up again in {time.monotonic() - began:.1f}s")
    at(0.7)
    _kill_child(victims[1], run)
    thread.join(120 * SCALE)
    assert run.done.is_set() and len(run.sent) == TOTAL, "the producer got every id in"
    last_kill = _kill_main(fleet, victims[1], run, r if redis_broker else None)
    kill_times[victims[1].process.pid] = last_kill
    expected = set(range(1, TOTAL + 1))

    def drained() -> bool:
        got = {int(a.im["message_id"]) for a in sim.accepted()}
        return expected <= got and pending_items(r) == 0

    try:
        wait_for(drained, timeout_s=120 * SCALE, interval_s=0.1, what="every id accepted")
    except AssertionError:
        missing = sorted(expected - {int(a.im["message_id"]) for a in sim.accepted()})
        print(f"\nmissing={len(missing)} first={missing[:10]} {describe(r)}")
        print("\n".join(run.kills))
        raise
    recovered_s = time.monotonic() - last_kill
    stop_watching.set()
    return run, recovered_s, stats(r)


def _report(name: str, sim: Simulator, run: Run, recovered_s: float, s: dict[str, int]) -> int:
    counts = Counter(int(a.im["message_id"]) for a in sim.accepted())
    lost = TOTAL - len(counts)
    duplicates = sum(c - 1 for c in counts.values())
    print(
        f"\n[fast recovery, {name}] enqueued={TOTAL} delivered={len(counts)} lost={lost} "
        f"duplicates_sent={duplicates} all_delivered_after_last_kill={recovered_s:.1f}s "
        f"redelivered_confirms={s.get('coalesced', 0) + s.get('deduplicated', 0)} "
        f"(coalesced={s.get('coalesced', 0)} deduplicated={s.get('deduplicated', 0)}) "
        f"leases_expired={s.get('leases_expired', 0)} dead={s.get('dead_lettered', 0)} "
        f"producer_errors={len(run.producer_errors)}"
    )
    for kill in run.kills:
        print(f"  {kill}")
    for pid, after in run.restored_after.items():
        print(f"  main {pid}: its {run.held[pid]} reserved messages put back {after:.1f}s after")
    return lost


@pytest.mark.slow
@pytest.mark.timeout(300 * SCALE)
def test_redis_broker_sigkills_recover_within_30s_at_default_settings(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    run, recovered_s, s = _scenario(fleet, sim, r, redis_url, restart=None)
    lost = _report("redis", sim, run, recovered_s, s)
    assert lost == 0
    assert s.get("dead_lettered", 0) == 0
    assert recovered_s <= REDIS_BOUND_S
    # only what the killed processes held ran twice: a pool child's one task each, and the
    # reserved messages of the main processes (confirm and flush tasks alike)
    assert s.get("coalesced", 0) + s.get("deduplicated", 0) <= sum(run.held.values()) + 2 * 2


@pytest.mark.slow
@pytest.mark.timeout(300 * SCALE)
def test_rabbitmq_broker_sigkills_and_a_restart_recover_within_10s_at_default_settings(
    rabbitmq: LocalRabbitMQ | None,
    amqp_url: str,
    sim: Simulator,
    redis_url: str,
    r: redis.Redis,
    tmp_path: Path,
) -> None:
    if rabbitmq is None:
        pytest.skip("the broker-restart scenario needs a private RabbitMQ node to restart")
    fleet = Fleet(redis_url, sim, tmp_path, env={"CELERY_BROKER_URL": amqp_url})
    try:
        crash = lambda: rabbitmq.restart(kill=True)  # noqa: E731 (kill -9, then start again)
        run, recovered_s, s = _scenario(fleet, sim, r, amqp_url, restart=crash)
    finally:
        fleet.stop()
    lost = _report("rabbitmq", sim, run, recovered_s, s)
    assert lost == 0
    assert s.get("dead_lettered", 0) == 0
    assert recovered_s <= AMQP_BOUND_S
