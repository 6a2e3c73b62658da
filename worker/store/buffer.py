"""The pending buffer in Redis, and the one owner of Redis for the flow: the truth about every
confirmation until the portal took it.

One typed method per Lua script in `lua/` (parameters by name, replies read into dataclasses),
and every other read or write the flow makes (the portal's packing, its stored reset time, the
counters); flow code never holds the client. Every state change of a group is one script.
docs/design.md draws the group's states.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from redis import Redis

from worker.flush.policy import counted_code
from worker.settings import Settings
from worker.store.clock import server_time
from worker.store.keys import Group, Keys, text
from worker.store.kinds import Action, Added, Begun
from worker.store.replies import Begin, GroupIngested, Ingested, Lease, Settled
from worker.store.scripts import PARKED, Bound, script
from worker.store.triggers import Trigger, new_task_id

#: the portal hash's record of a refusal of packed calls: when, and the code that refused
PACKING_OFF_AT, PACKING_OFF_REASON = "packing_off_at", "packing_off_reason"


def _trigger(task_id: str, reply: dict[str, Any]) -> Trigger:
    return Trigger.from_script(task_id, reply["send"], reply["delay_ms"], reply.get("tick"))


class Buffer:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self._ingest = script(redis, "ingest")
        self._ingest_many = script(redis, "ingest_many")
        self._begin = script(redis, "begin")
        self._settle = script(redis, "settle")
        self._claim = script(redis, "claim_due")
        self._take_tick = script(redis, "take_tick")
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

    @property
    def tick_s(self) -> float:
        """How far apart the ticks waits end on are: DELIVERY_FLUSH_TICK_S, at most a quarter
        of the window (0: no ticks). 0 on RabbitMQ, whose delayed delivery counts whole
        seconds: every countdown there is a second already, and ticks measured slower recovery
        from killed workers (tests/reliability/test_fast_recovery.py)."""
        if self.s.broker_is_amqp:
            return 0.0
        return min(self.s.flush_tick_s, self.s.flush_window_s / 4)

    def _timing(self) -> dict[str, Any]:
        return {
            "max_countdown_s": self.s.max_countdown_s,
            "grace_s": self.grace_s,
            "tick_s": self.tick_s,
        }

    def run_acked(
        self, bound: Bound, keys: Mapping[str, str], args: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Run a script that keeps a producer's message; with DELIVERY_REPLICA_ACKS, `WAIT` on
        the script's own connection in the same round trip, so its writes (and all before
        them) are on that many replicas and a failover to one of them keeps them. Its answer,
        and whether the replicas acknowledged (a miss counted)."""
        want = self.s.replica_acks
        if not want:
            return bound(keys, args), True
        reply, acked = bound.then_wait(keys, args, want, self.s.replica_timeout_ms)
        if acked < want:
            self.count("replica_wait_timeouts")
        return reply, acked >= want

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
        reply, replicated = self.run_acked(self._ingest, keys, args)
        kind = {1: Added.ADDED, 0: Added.COALESCED, 2: Added.DEDUPLICATED}[int(reply["added"])]
        return Ingested(kind, _trigger(task_id, reply["trigger"]), replicated)

    def ingest_many(
        self, groups: dict[Group, list[tuple[str, dict[str, Any]]]]
    ) -> tuple[list[GroupIngested], bool]:
        """Add each group's (message id, element) pairs, one script call per group, all in one
        round trip (then WAIT for DELIVERY_REPLICA_ACKS replicas, when set); whether they
        acknowledged."""
        s = self.s
        calls, task_ids = [], []
        for group, items in groups.items():
            task_ids.append(new_task_id())
            pairs = [[m, json.dumps(e, separators=(",", ":"))] for m, e in items]
            args = {
                "group_id": group.id,
                "items_json": json.dumps(pairs, separators=(",", ":")),
                "batch_size": s.batch_size,
                "window_s": s.flush_window_s,
                "task_id": task_ids[-1],
                **self._timing(),
                "dedup_window_s": s.dedup_window_s,
            }
            calls.append((self.keys.group_keys(group), args))
        replies, acked = self._ingest_many.many_then_wait(
            calls, s.replica_acks, s.replica_timeout_ms
        )
        replicated = not s.replica_acks or acked >= s.replica_acks
        if not replicated:
            self.count("replica_wait_timeouts")
        done = [
            GroupIngested(
                group,
                {kind: int(reply[kind.value]) for kind in Added},
                _trigger(task_id, reply["trigger"]),
            )
            for group, task_id, reply in zip(groups, task_ids, replies, strict=True)
        ]
        return done, replicated

    def begin(self, group: Group, own_task_id: str, also: Sequence[Group] = ()) -> Begin:
        """Start a flush of the group's portal: lease its ready groups (this one, and `also`,
        more of the portal's groups a tick named, among the candidates) if the portal is ready
        and its budget has a slot."""
        s, keys, portal = self.s, self.keys, group.portal
        ids = self._candidates(group, also)
        candidates = [Group.parse(i) for i in ids]
        lease_id, task_id = str(uuid.uuid4()), new_task_id()
        reply = self._begin(
            keys.portal_keys(portal),
            {
                "group_ids_json": json.dumps(ids),
                "lease_id": lease_id,
                "own_task_id": own_task_id,
                "task_id": task_id,
                "batch_size": s.batch_size,
                "window_s": s.flush_window_s,
                "lease_ttl_s": s.lease_ttl_s,
                "default_rate_per_s": s.rate_per_s,
                "default_rate_burst": s.rate_burst,
                "budget_share": s.portal_budget_share,
                "share_window_s": s.portal_budget_window_s,
                "max_inflight": s.portal_max_inflight,
                "default_packing": s.packing,
                "pack_groups": s.pack_groups,
                **self._timing(),
                "lease_margin_s": self.lease_margin_s,
            },
            [keys.lease_keys(g) for g in candidates],
        )
        kind = Begun(reply["kind"])
        got = reply.get("trigger")
        trigger = _trigger(task_id, got) if got else None
        trigger_group = Group.parse(got["group_id"]) if got else None
        if kind not in (Begun.LEASED, Begun.REFRESH):
            return Begin(kind, trigger, trigger_group)
        shared = reply["lease"]
        leases = [
            Lease.from_script(Group.parse(g["group_id"]), lease_id, shared, g)
            for g in reply["groups"]
        ]
        return Begin(
            kind, trigger, trigger_group, leases, shared["refused_code"], bool(shared["packs"])
        )

    def _candidates(self, group: Group, also: Sequence[Group] = ()) -> list[str]:
        """The ids of the groups a flush of `group`'s portal looks at: the oldest of its
        pending index, enough to fill one call past those others lease (one round trip,
        begin.lua re-checks each), `group` itself and `also`."""
        s, portal = self.s, group.portal
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.portal(portal), ["packing", PACKING_OFF_AT])
        pipe.zrange(self.keys.pending(portal), 0, s.pack_groups * (1 + s.portal_max_inflight) - 1)
        (mode, off_at), listed = pipe.execute()
        packs = (text(mode) if mode else s.packing) == "batch" and off_at is None
        listed = listed[: (s.pack_groups if packs else 1) * (1 + s.portal_max_inflight)]
        named = [group.id, *(g.id for g in also)]
        return list(dict.fromkeys([*(text(g) for g in listed), *named]))

    def settle(
        self,
        lease: Lease,
        action: Action,
        *,
        delay_s: float = 0.0,
        portal_wide: bool = False,
        drain_budget: bool = False,
        counts_failure: bool = False,
        bad_answer: bool = False,
        code: str = "",
        description: str = "",
        operating_reset_at: float | None = None,
        counts_key_wait: bool = False,
        counts_call: bool = False,
    ) -> Settled:
        """End a group's part of a flush with the policy's action; its items go, or go back,
        atomically. `counts_call`: the group's own direct call succeeded, counted here (as
        `count_call` would, in the same round trip)."""
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
                "counts_key_wait": int(counts_key_wait),
                "bad_answer": int(bad_answer),
                "counts_call": int(counts_call),
            },
        )
        return Settled(int(reply["settled"]), _trigger(task_id, reply["trigger"]))

    def renew(self, lease: Lease) -> bool:
        """Extend the lease by DELIVERY_LEASE_TTL_S if it is still ours."""
        return self.renew_all([lease]) == [lease]

    def renew_all(self, leases: list[Lease]) -> list[Lease]:
        """Extend each lease by DELIVERY_LEASE_TTL_S if it is still ours (one round trip);
        those extended."""
        args = {"lease_ttl_s": self.s.lease_ttl_s, "lease_margin_s": self.lease_margin_s}
        calls = [
            (
                self.keys.group_keys(lease.group),
                {"group_id": lease.group.id, "lease_id": lease.lease_id, **args},
            )
            for lease in leases
        ]
        replies, _ = self._renew.many_then_wait(calls, 0, 0)
        return [lease for lease, reply in zip(leases, replies, strict=True) if reply["extended"]]

    def claim_due(self, limit: int = 500) -> list[Group]:
        """The sweep's share: groups whose due time passed (each pushed a grace period on)."""
        reply = self._claim(
            {"due_key": self.keys.due, "last_run_key": self.keys.sweep_last_run},
            {"grace_s": self.grace_s, "limit": limit},
        )
        return [Group.parse(i) for i in reply["group_ids"] or []]

    def take_tick(self, tick: int, limit: int) -> tuple[list[Group], bool]:
        """A tick's flush task's groups (up to `limit`), and whether more are due."""
        reply = self._take_tick(
            {"ticks_key": self.keys.ticks, "soon_key": self.keys.soon},
            {"tick": tick, "tick_s": self.tick_s, "limit": limit},
        )
        return [Group.parse(i) for i in reply["group_ids"] or []], bool(reply["more"])

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

    def packing_on(self, member_id: str) -> bool:
        """Does this portal's flush pack (its registration's choice, else DELIVERY_PACKING),
        and it never refused the method inside `batch`?"""
        mode, off_at = self.redis.hmget(self.keys.portal(member_id), ["packing", PACKING_OFF_AT])
        chosen = text(mode) if mode else self.s.packing
        return chosen == "batch" and off_at is None

    def turn_packing_off(self, member_id: str, code: str) -> bool:
        """Record that the portal refused the method inside `batch`; True the first time."""
        key = self.keys.portal(member_id)
        if not self.redis.hsetnx(key, PACKING_OFF_AT, f"{self.server_time():.3f}"):
            return False
        self.redis.hset(key, PACKING_OFF_REASON, code)
        self.count("packing_turned_off")
        return True

    def stored_reset_at(self, member_id: str) -> float | None:
        """The portal's last `operating_reset_at` (when its operating-time limit resets)."""
        raw = self.redis.hget(self.keys.portal(member_id), "operating_reset_at")
        return float(raw) if raw else None

    def count(self, counter: str, amount: int = 1) -> None:
        self.redis.hincrby(self.keys.stats, counter, amount)

    def count_codes(self, codes: Sequence[str]) -> None:
        """Portal error codes answered inside a `batch` answer, one count each (as count_call
        counts them)."""
        pipe = self.redis.pipeline(transaction=False)
        for code in codes:
            pipe.hincrby(self.keys.stats, f"api_error:{counted_code(code)}", 1)
        pipe.execute()

    def count_call(self, outcome: str, code: str | None = None) -> None:
        """One call made to a portal, by its outcome (the value of the policy's `Outcome`) and
        the portal's error code. Codes are counted under a known name or OTHER (a portal never
        adds a field or a metric series); logs and dead letters keep them verbatim."""
        if not code:  # (a success: one command, no pipeline to build)
            self.redis.hincrby(self.keys.stats, f"calls:{outcome}", 1)
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self.keys.stats, f"calls:{outcome}", 1)
        pipe.hincrby(self.keys.stats, f"api_error:{counted_code(code)}", 1)
        pipe.execute()

    def server_time(self) -> float:
        return server_time(self.redis)
