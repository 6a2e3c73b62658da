"""Per-process state: settings, the Redis client and the objects built on it.

Built lazily, once per process (a forked pool child builds its own connections).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from worker.buffer import Buffer, Trigger
from worker.keys import Group
from worker.settings import Settings
from worker.tokens import PortalStore

FLUSH_TASK = "delivery.flush"
FLUSH_QUEUE = "flush"


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        health_check_interval=30,
        socket_connect_timeout=5,
        socket_timeout=30,
        retry_on_timeout=True,
    )


@dataclass
class Runtime:
    settings: Settings
    send_task: Callable[..., object]
    redis: redis.Redis = field(init=False)
    buffer: Buffer = field(init=False)
    portals: PortalStore = field(init=False)

    def __post_init__(self) -> None:
        self.redis = connect(self.settings)
        self.buffer = Buffer(self.redis, self.settings)
        self.portals = PortalStore(self.redis, self.settings)

    def send_flush(self, group: Group, trigger: Trigger) -> None:
        """Send the flush task a script asked for (at most one delayed one per group)."""
        if trigger.send and trigger.delay_s is not None:
            self.send_task(
                FLUSH_TASK,
                kwargs={"group": group.id},
                task_id=trigger.task_id,
                countdown=trigger.delay_s or None,
                queue=FLUSH_QUEUE,
            )

    def count(self, counter: str, amount: int = 1) -> None:
        self.redis.hincrby(self.buffer.keys.stats, counter, amount)


_runtime: tuple[int, Runtime] | None = None


def get(settings: Settings, send_task: Callable[..., object]) -> Runtime:
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        _runtime = (os.getpid(), Runtime(settings, send_task))
    return _runtime[1]
