"""A tick's flush: every portal whose wait ended in one tick, flushed by one task.

A fleet of light portals has one confirmation per portal every few seconds: with a flush task
per portal per window, each confirmation costs an ingest task, a flush task and a call, and the
flush task's Celery overhead (its publish, fetch, pool hand-off and ack) was the largest part
(docs/benchmarks.md). Waits end on ticks instead (worker/store/triggers.py), and the one task
of a tick runs here: it lists the tick's groups (`take_tick.lua`) and flushes each portal once
(worker/flush/flow.py, the same path as `delivery.flush`).

Each portal is flushed in a thread of the process's tick pool, so a portal that answers slowly
holds its own thread, not the other portals of its tick: their calls go out and are settled
while it waits. The task returns when every portal's flush has (the leases and the
`DELIVERY_MAX_INFLIGHT` cap bound what a slow portal holds, as for a flush of its own).

Only `ACTIVE` flushes run at once while they are quick: many threads contending for the GIL
cost more CPU than the flushes (at the fleet shape, 32 at once cost about a fifth more worker
CPU per confirmation than 4). A flush still running after `SLOW_S` no longer counts: it waits
on its portal, and the next portals start beside it, up to `THREADS` in all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import redis
import structlog

from worker.flush.flow import flush
from worker.perprocess import per_process
from worker.runtime import Runtime
from worker.store.keys import Group

log = structlog.stdlib.get_logger("worker.flush.tick")

#: groups one tick's task takes at most (a tick with more sends itself again for the rest,
#: once those it took have begun)
TAKE_LIMIT = 200
#: portals flushed at once by one process's tick pool (threads are started as needed)
THREADS = 32
#: quick flushes run at once by one tick's task; one that takes longer than SLOW_S stops counting
ACTIVE = 4
SLOW_S = 0.25

#: sends the task of tick number `tick` again, for the groups it left (more than TAKE_LIMIT)
SendAgain = Callable[[int], None]


def _pool() -> ThreadPoolExecutor:
    return per_process(
        "tick-pool", lambda: ThreadPoolExecutor(THREADS, thread_name_prefix="b24d-tick")
    )


def by_portal(groups: list[Group]) -> list[list[Group]]:
    """The groups, one list per portal, in the order each portal first appears."""
    portals: dict[str, list[Group]] = {}
    for group in groups:
        portals.setdefault(group.portal, []).append(group)
    return list(portals.values())


def flush_portal(rt: Runtime, groups: list[Group], task_id: str) -> None:
    """Flush one portal once, its groups in the tick all named (those the flush does not lease
    are scheduled again by begin.lua, as for any flush)."""
    try:
        flush(rt, groups[0], task_id, also=groups[1:])
    except redis.RedisError as exc:
        # the store is away: each group's due time (a grace period on) brings it back
        log.warning("tick flush failed", portal=groups[0].portal, error=type(exc).__name__)


def flush_tick(rt: Runtime, tick: int, task_id: str, send_again: SendAgain) -> int:
    """Flush every portal of tick `tick`; how many portals."""
    groups, more = rt.buffer.take_tick(tick, TAKE_LIMIT)
    portals = by_portal(groups)
    if len(portals) == 1:
        flush_portal(rt, portals[0], task_id)
    elif portals:
        for future in _flush_all(rt, portals, task_id):
            if (exc := future.exception()) is not None:
                log.error("tick flush raised", error=type(exc).__name__)
    if more:  # the groups taken have begun (and left `soon`): the next task lists the rest
        send_again(tick)
    return len(portals)


def _flush_all(rt: Runtime, portals: list[list[Group]], task_id: str) -> list[Future[None]]:
    """Flush each portal in the pool, at most ACTIVE quick ones at once; each one's future,
    done."""
    pool, waiting = _pool(), deque(portals)
    started: list[Future[None]] = []
    quick: set[Future[None]] = set()
    while waiting:
        while waiting and len(quick) < ACTIVE:
            started.append(pool.submit(flush_portal, rt, waiting.popleft(), task_id))
            quick.add(started[-1])
        done, _ = wait(quick, timeout=SLOW_S, return_when=FIRST_COMPLETED)
        quick = quick - done if done else set()  # none ended in SLOW_S: all slow, none count
    wait(started)
    return started
