"""Per-process state: settings, the Redis client and the objects built on it.

`Runtime.create` builds one explicitly (tests build their own, with a recording `send_task`);
`get` keeps one per process and per (settings, send_task), so a forked pool child builds its
own connections.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from redis import Redis

from worker.perprocess import per_process
from worker.portals.registry import PortalStore
from worker.settings import Settings
from worker.store import triggers
from worker.store.buffer import Buffer
from worker.store.keys import Group
from worker.store.triggers import SendTask, Trigger
from worker.transport import sentinel
from worker.transport.config import countdown_s


def connect(settings: Settings, *, timeout_s: float = 30) -> Redis:
    """The state store's client (the sentinels' current master with a sentinel:// URL)."""
    return sentinel.connect(settings.redis_url, settings.redis_sentinel_master, timeout_s=timeout_s)


@dataclass
class Runtime:
    settings: Settings
    send_task: SendTask
    redis: Redis
    buffer: Buffer
    portals: PortalStore

    @classmethod
    def create(
        cls, settings: Settings, send_task: SendTask, client: Redis | None = None
    ) -> Runtime:
        """Everything a task needs, on `client` (default: a new connection to the settings')."""
        client = connect(settings) if client is None else client
        return cls(
            settings,
            send_task,
            client,
            Buffer(client, settings),
            PortalStore(client, settings, send_task),
        )

    def send_flush(self, group: Group, trigger: Trigger) -> None:
        """Send the flush task a script claimed (at most one delayed one per group)."""
        delay = trigger.delay_s
        if delay is not None and delay != float("inf"):  # whole seconds on RabbitMQ
            trigger = dataclasses.replace(trigger, delay_s=countdown_s(self.settings, delay) or 0.0)
        triggers.send(self.send_task, group, trigger)

    def send_flushes(self, groups: list[Group]) -> None:
        """Flush these groups now (their due time already covers a lost task)."""
        for group in groups:
            triggers.send_flush(self.send_task, group)

    def count(self, counter: str, amount: int = 1) -> None:
        self.buffer.count(counter, amount)


def get(settings: Settings, send_task: SendTask) -> Runtime:
    """This process's runtime for these settings and this `send_task`."""
    return per_process(
        ("runtime", settings, send_task), lambda: Runtime.create(settings, send_task)
    )
