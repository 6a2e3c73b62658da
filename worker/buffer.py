"""The pending buffer in Redis: the truth about every confirmation until the portal took it.

Thin typed wrappers over the Lua scripts in `lua/`; every state change of a group is one script.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from worker.keys import Group, Keys, text
from worker.scripts import script
from worker.settings import Settings

PARKED = 1e18  # the scripts' "until portal.register"


@dataclass(frozen=True)
class Trigger:
    """What a script asks of the caller: send flush task `task_id` after `delay_s`."""

    send: bool
    task_id: str
    delay_s: float | None  # None: nothing pending; inf: the portal is parked

    @classmethod
    def parse(cls, task_id: str, send: int, delay_ms: int) -> Trigger:
        delay = None if delay_ms == -1 else float("inf") if delay_ms == -2 else delay_ms / 1000
        return cls(bool(send), task_id, delay)


@dataclass(frozen=True)
class Lease:
    group: Group
    token: str
    endpoint: str
    access_token: str = field(repr=False)
    token_version: int
    throttles: int
    started_at: float
    failures: int
    ids: list[str]
    elements: list[dict[str, Any]]
    oldest_enqueued_at: float


@dataclass(frozen=True)
class Begin:
    kind: str  # busy | wait | throttled | leased
    trigger: Trigger | None = None
    lease: Lease | None = None


class Buffer:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self._ingest = script(redis, "ingest")
        self._begin = script(redis, "begin")
        self._settle = script(redis, "settle")
        self._claim = script(redis, "claim_due")

    @property
    def grace_s(self) -> float:
        """How long past a trigger's time the sweep waits before it re-triggers the group."""
        return self.s.max_countdown_s + 2 * self.s.sweep_interval_s

    def _common(self) -> list[Any]:
        return [self.s.max_countdown_s, self.grace_s]

    def ingest(
        self, group: Group, message_id: str, element: dict[str, Any]
    ) -> tuple[bool, Trigger]:
        """Add a confirmation; False when it coalesced with a pending one."""
        task_id = str(uuid.uuid4())
        added, send, delay = self._ingest(
            keys=self.keys.group_keys(group),
            args=[
                group.id,
                message_id,
                json.dumps(element, separators=(",", ":")),
                self.s.batch_size,
                self.s.flush_window_s,
                task_id,
                *self._common(),
            ],
        )
        return bool(added), Trigger.parse(task_id, send, delay)

    def begin(self, group: Group, own_task_id: str) -> Begin:
        token, task_id = str(uuid.uuid4()), str(uuid.uuid4())
        s = self.s
        reply = self._begin(
            keys=self.keys.group_keys(group),
            args=[
                group.id,
                token,
                s.batch_size,
                s.flush_window_s,
                s.lease_ttl_s,
                s.rate_per_s,
                s.rate_burst,
                s.portal_max_inflight,
                own_task_id,
                task_id,
                *self._common(),
            ],
        )
        kind = reply[0].decode()
        if kind != "leased":
            trigger = Trigger.parse(task_id, *reply[1]) if len(reply) > 1 else None
            return Begin(kind, trigger)
        endpoint, access_token, version, throttles = (v.decode() for v in reply[1])
        return Begin(
            kind,
            lease=Lease(
                group=group,
                token=token,
                endpoint=endpoint,
                access_token=access_token,
                token_version=int(version),
                throttles=int(throttles),
                started_at=float(reply[2]),
                failures=int(reply[3]),
                ids=[i.decode() for i in reply[4]],
                elements=[json.loads(e) for e in reply[5]],
                oldest_enqueued_at=float(reply[6]),
            ),
        )

    def settle(
        self,
        lease: Lease,
        action: str,
        *,
        delay_s: float = 0.0,
        portal_wide: bool = False,
        drain_budget: bool = False,
        counts_failure: bool = False,
        code: str = "",
        description: str = "",
        operating_reset_at: float | None = None,
    ) -> tuple[int, Trigger]:
        task_id = str(uuid.uuid4())
        s = self.s
        settled, send, delay = self._settle(
            keys=self.keys.group_keys(lease.group),
            args=[
                lease.group.id,
                lease.token,
                action,
                min(delay_s, PARKED),
                int(portal_wide),
                int(drain_budget),
                int(counts_failure),
                code,
                description[:500],
                s.batch_size,
                s.flush_window_s,
                s.rate_per_s,
                s.rate_burst,
                task_id,
                *self._common(),
                json.dumps(lease.ids),
                "" if operating_reset_at is None else operating_reset_at,
            ],
        )
        return int(settled), Trigger.parse(task_id, send, delay)

    def claim_due(self, limit: int = 500) -> list[Group]:
        """The sweep's share: groups whose due time passed (each pushed a grace period on)."""
        ids = self._claim(keys=[self.keys.due], args=[self.grace_s, limit])
        return [Group.parse(i.decode()) for i in ids]

    def resume_portal(self, member_id: str) -> int:
        """Make every group of a portal due now (after portal.register)."""
        groups = self.redis.smembers(self.keys.groups(member_id))
        if not groups:
            return 0
        now = self.server_time()
        self.redis.zadd(self.keys.due, {text(g): now for g in groups})
        return len(groups)

    def server_time(self) -> float:
        seconds, micros = self.redis.time()
        return float(seconds) + micros / 1_000_000
