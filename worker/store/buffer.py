"""The pending buffer in Redis: the truth about every confirmation until the portal took it.

One typed function per Lua script in `lua/` (parameters by name, replies read into dataclasses);
every state change of a group is one script. docs/design.md draws the group's states.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from worker.flush.policy import Action
from worker.settings import Settings
from worker.store.clock import server_time
from worker.store.keys import Group, Keys, text
from worker.store.scripts import PARKED, script
from worker.store.triggers import Trigger, new_task_id


def _trigger(task_id: str, reply: dict[str, Any]) -> Trigger:
    return Trigger.from_script(task_id, reply["send"], reply["delay_ms"])


@dataclass(frozen=True)
class Ingested:
    """`ingest.lua`'s answer: `added`, `coalesced` (a repeat of a pending message id) or
    `deduplicated` (one the group delivered within DELIVERY_DEDUP_WINDOW_S).

    `replicated` is False only when DELIVERY_REPLICA_ACKS replicas did not acknowledge the
    ingest within DELIVERY_REPLICA_TIMEOUT_MS (it then lives on the primary alone)."""

    kind: str
    trigger: Trigger
    replicated: bool = True

    @property
    def added(self) -> bool:
        return self.kind == "added"


@dataclass(frozen=True)
class Lease:
    """A batch leased for one call: the items, the portal's token, the group's history."""

    group: Group
    lease_id: str
    endpoint: str
    access_token: str = field(repr=False)
    token_version: int
    throttles: int
    started_at: float
    failures: int
    ids: list[str]
    elements: list[dict[str, Any]]
    oldest_enqueued_at: float

    @classmethod
    def from_script(
        cls, group: Group, lease_id: str, shared: dict[str, Any], own: dict[str, Any]
    ) -> Lease:
        """A lease from a begin script's answer: `shared` holds the portal's part (endpoint,
        token, budget), `own` the group's (its failures, items and their age)."""
        return cls(
            group=group,
            lease_id=lease_id,
            endpoint=shared["endpoint"],
            access_token=shared["access_token"],
            token_version=int(shared["token_version"]),
            throttles=int(shared["throttles"]),
            started_at=float(shared["started_at"]),
            failures=int(own["failures"]),
            ids=list(own["ids"] or []),
            elements=[json.loads(e) for e in own["elements"] or []],
            oldest_enqueued_at=float(own["oldest_enqueued_at"]),
        )


@dataclass(frozen=True)
class Begin:
    """`begin.lua`'s answer."""

    #: busy | wait | throttled | refresh_wait | leased | refresh (leased to refresh, not to call)
    kind: str
    trigger: Trigger | None = None
    lease: Lease | None = None
    #: with `refresh`: the error code the portal refused the stored token version with
    refused_code: str = ""


@dataclass(frozen=True)
class Settled:
    """`settle.lua`'s answer: how many items it delivered or dead-lettered."""

    settled: int
    trigger: Trigger


class Buffer:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self._ingest = script(redis, "ingest")
        self._begin = script(redis, "begin")
        self._settle = script(redis, "settle")
        self._claim = script(redis, "claim_due")
        self._refuse = script(redis, "refuse")
        self._wake = script(redis, "wake")
        self._renew = script(redis, "renew")

    @property
    def grace_s(self) -> float:
        """How long past a trigger's time the sweep waits before it re-triggers the group."""
        return self.s.max_countdown_s + 2 * self.s.sweep_interval_s

    @property
    def lease_margin_s(self) -> float:
        """How long past a lease's expiry the sweep re-triggers its group (a dead flusher)."""
        return self.s.sweep_interval_s

    def _timing(self) -> dict[str, Any]:
        return {"max_countdown_s": self.s.max_countdown_s, "grace_s": self.grace_s}

    def begin_args(
        self, group: Group, lease_id: str, own_task_id: str, task_id: str
    ) -> dict[str, Any]:
        """The arguments `begin.lua` and `begin_pack.lua` both take, by name."""
        s = self.s
        return {
            "group_id": group.id,
            "lease_id": lease_id,
            "batch_size": s.batch_size,
            "window_s": s.flush_window_s,
            "lease_ttl_s": s.lease_ttl_s,
            "default_rate_per_s": s.rate_per_s,
            "default_rate_burst": s.rate_burst,
            "max_inflight": s.portal_max_inflight,
            "own_task_id": own_task_id,
            "task_id": task_id,
            **self._timing(),
        }

    def ingest(self, group: Group, message_id: str, element: dict[str, Any]) -> Ingested:
        """Add a confirmation to its group (coalescing a repeat of a pending message id)."""
        task_id = new_task_id()
        keys = self.keys.group_keys(group)
        args = {
            "group_id": group.id,
            "message_id": message_id,
            "element_json": json.dumps(element, separators=(",", ":")),
            "batch_size": self.s.batch_size,
            "window_s": self.s.flush_window_s,
            "task_id": task_id,
            **self._timing(),
            "dedup_window_s": self.s.dedup_window_s,
        }
        replicated = True
        if self.s.replica_acks:
            # WAIT on the script's own connection: its writes (and all before them) are on
            # that many replicas, so a failover to one of them keeps this confirmation.
            want = self.s.replica_acks
            reply, acked = self._ingest.then_wait(keys, args, want, self.s.replica_timeout_ms)
            replicated = acked >= want
            if not replicated:
                self.redis.hincrby(self.keys.stats, "replica_wait_timeouts", 1)
        else:
            reply = self._ingest(keys, args)
        kind = {1: "added", 0: "coalesced", 2: "deduplicated"}[int(reply["added"])]
        return Ingested(kind, _trigger(task_id, reply["trigger"]), replicated)

    def begin(self, group: Group, own_task_id: str) -> Begin:
        """Lease a batch of the group if it is ready and the portal's budget has a slot."""
        lease_id, task_id = str(uuid.uuid4()), new_task_id()
        reply = self._begin(
            self.keys.group_keys(group),
            {
                **self.begin_args(group, lease_id, own_task_id, task_id),
                "lease_margin_s": self.lease_margin_s,
            },
        )
        kind = reply["kind"]
        if kind not in ("leased", "refresh"):
            trigger = _trigger(task_id, reply["trigger"]) if "trigger" in reply else None
            return Begin(kind, trigger)
        got = reply["lease"]
        return Begin(
            kind,
            lease=Lease.from_script(group, lease_id, got, got),
            refused_code=got["refused_code"],
        )

    def settle(
        self,
        lease: Lease,
        action: Action,
        *,
        delay_s: float = 0.0,
        portal_wide: bool = False,
        drain_budget: bool = False,
        counts_failure: bool = False,
        code: str = "",
        description: str = "",
        operating_reset_at: float | None = None,
    ) -> Settled:
        """End a flush with the policy's action; the items go, or go back, atomically."""
        task_id = new_task_id()
        s = self.s
        reply = self._settle(
            self.keys.group_keys(lease.group),
            {
                "group_id": lease.group.id,
                "lease_id": lease.lease_id,
                "action": action.value,
                "delay_s": min(delay_s, PARKED),
                "portal_wide": int(portal_wide),
                "drain": int(drain_budget),
                "counts_failure": int(counts_failure),
                "code": code,
                "description": description[:500],
                "batch_size": s.batch_size,
                "window_s": s.flush_window_s,
                "default_rate_per_s": s.rate_per_s,
                "default_rate_burst": s.rate_burst,
                "task_id": task_id,
                **self._timing(),
                "sent_ids_json": json.dumps(lease.ids),
                "operating_reset_at": "" if operating_reset_at is None else operating_reset_at,
                "dedup_window_s": s.dedup_window_s,
            },
        )
        return Settled(int(reply["settled"]), _trigger(task_id, reply["trigger"]))

    def renew(self, lease: Lease) -> bool:
        """Extend the lease by DELIVERY_LEASE_TTL_S if it is still ours."""
        reply = self._renew(
            self.keys.group_keys(lease.group),
            {
                "group_id": lease.group.id,
                "lease_id": lease.lease_id,
                "lease_ttl_s": self.s.lease_ttl_s,
                "lease_margin_s": self.lease_margin_s,
            },
        )
        return bool(reply["extended"])

    def claim_due(self, limit: int = 500) -> list[Group]:
        """The sweep's share: groups whose due time passed (each pushed a grace period on)."""
        reply = self._claim(
            {"due_key": self.keys.due, "last_run_key": self.keys.sweep_last_run},
            {"grace_s": self.grace_s, "limit": limit},
        )
        return [Group.parse(i) for i in reply["group_ids"] or []]

    def refuse(self, member_id: str, token_version: int, code: str) -> bool:
        """The portal refused this token version: no flush calls with it again."""
        reply = self._refuse(
            {"portal_key": self.keys.portal(member_id)},
            {"token_version": token_version, "code": code},
        )
        return bool(reply["recorded"])

    def wake_refresh_waiters(self, member_id: str) -> list[Group]:
        """A refresh ended: the groups that waited for it, each due again (send their flush)."""
        reply = self._wake(
            {"refresh_waiters_key": self.keys.refresh_waiters(member_id), "due_key": self.keys.due},
            {"grace_s": self.grace_s},
        )
        return [Group.parse(i) for i in reply["group_ids"] or []]

    def resume_portal(self, member_id: str) -> int:
        """Make every group of a portal due now (after portal.register)."""
        groups = self.redis.smembers(self.keys.groups(member_id))
        if not groups:
            return 0
        now = self.server_time()
        self.redis.zadd(self.keys.due, {text(g): now for g in groups})
        return len(groups)

    def server_time(self) -> float:
        return server_time(self.redis)
