"""What the workers spent: CPU seconds of their process trees (psutil) and the Celery tasks they
ran (`celery inspect stats`, each worker's `total` per task name), read before and after a
measured part."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.capacity_report import tree_cpu
from bench.context import Ctx


@dataclass(frozen=True)
class Reading:
    cpu_s: float
    tasks: int
    at: float

    def __sub__(self, before: Reading) -> Reading:
        return Reading(self.cpu_s - before.cpu_s, self.tasks - before.tasks, self.at - before.at)


def tasks_run(ctx: Ctx) -> int:
    """Tasks the running workers have started, all names together (sweeps included)."""
    names = [f"{child.name}@bench" for child in ctx.workers or []]
    replies = ctx.producer.app.control.inspect(destination=names, timeout=2.0).stats() or {}
    if set(replies) != set(names):
        raise RuntimeError(f"workers {sorted(set(names) - set(replies))} did not answer stats")
    return sum(sum(int(n) for n in reply.get("total", {}).values()) for reply in replies.values())


def read(ctx: Ctx) -> Reading:
    pids = [child.process.pid for child in ctx.workers or []]
    return Reading(tree_cpu(pids), tasks_run(ctx), time.time())
