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
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

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
        pool = _pool()
        futures = [pool.submit(flush_portal, rt, groups, task_id) for groups in portals]
        for future in wait(futures).done:
            if (exc := future.exception()) is not None:
                log.error("tick flush raised", error=type(exc).__name__)
    if more:  # the groups taken have begun (and left `soon`): the next task lists the rest
        send_again(tick)
    return len(portals)
