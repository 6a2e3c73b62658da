"""Every Redis key the project uses, in one place.

Per-portal keys carry the portal in a hash tag (`{member_id}`), so a later move to Redis Cluster
shards by portal and every per-portal script stays on one slot. The fleet-wide indexes
(`due`, dead letters, rejected, stats) are few and small.
"""

from __future__ import annotations

from dataclasses import dataclass


def text(value: bytes | str) -> str:
    """A Redis reply as text (the clients here return bytes)."""
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Group:
    """A batching group: one (portal, connector, line)."""

    portal: str
    connector: str
    line: int

    @property
    def id(self) -> str:
        return f"{self.portal}:{self.connector}:{self.line}"

    @classmethod
    def parse(cls, group_id: str) -> Group:
        portal, connector, line = group_id.split(":")
        return cls(portal, connector, int(line))


@dataclass(frozen=True)
class Keys:
    prefix: str = "b24d"

    # fleet-wide
    @property
    def due(self) -> str:
        """ZSET group id -> when the sweep must trigger it (safety net for lost triggers)."""
        return f"{self.prefix}:due"

    @property
    def ticks(self) -> str:
        """ZSET flush task id -> the number of the tick it runs at (one task per tick)."""
        return f"{self.prefix}:ticks"

    @property
    def soon(self) -> str:
        """ZSET group id -> when its tick's flush task is to flush it."""
        return f"{self.prefix}:soon"

    @property
    def dead(self) -> str:
        """ZSET dead-letter id -> dead-lettered at."""
        return f"{self.prefix}:dead"

    @property
    def dead_data(self) -> str:
        """HASH dead-letter id -> JSON record."""
        return f"{self.prefix}:dead:data"

    @property
    def rejected(self) -> str:
        """LIST of JSON records of rejected payloads, newest first, capped."""
        return f"{self.prefix}:rejected"

    @property
    def stats(self) -> str:
        """HASH counter -> value (ingested, coalesced, delivered, dead_lettered, ...)."""
        return f"{self.prefix}:stats"

    @property
    def sweep_last_run(self) -> str:
        """STRING: when the sweep last ran (Redis' clock, seconds), for `health beat`."""
        return f"{self.prefix}:sweep:last_run"

    @property
    def portals(self) -> str:
        """SET of registered member_ids."""
        return f"{self.prefix}:portals"

    @property
    def receipts_due(self) -> str:
        """ZSET member_id -> when its kept `delivery.sent` records or waiting receipts next need
        the sweep (the oldest record's expiry, the earliest receipt's wait)."""
        return f"{self.prefix}:receipts:due"

    # per portal
    def portal(self, member_id: str) -> str:
        """HASH: endpoints, tokens, token version, token owner, parking (blocked_until,
        block_reason, cpark:<connector>), rate overrides."""
        return f"{self.prefix}:{{{member_id}}}:portal"

    def bucket(self, member_id: str) -> str:
        """HASH level, ts: the portal's fleet-wide leaky bucket."""
        return f"{self.prefix}:{{{member_id}}}:bucket"

    def inflight(self, member_id: str) -> str:
        """ZSET lease id -> expiry: calls in flight to the portal."""
        return f"{self.prefix}:{{{member_id}}}:inflight"

    def refresh_lock(self, member_id: str) -> str:
        """STRING lock token, with expiry: a refresh of the portal's tokens is under way."""
        return f"{self.prefix}:{{{member_id}}}:refresh"

    def refresh_waiters(self, member_id: str) -> str:
        """SET of group ids waiting for the refresh under way to end (woken when it does)."""
        return f"{self.prefix}:{{{member_id}}}:refresh:waiters"

    def refreshing(self, member_id: str) -> str:
        """ZSET refresh attempt -> its deadline: token refreshes still out at an OAuth server."""
        return f"{self.prefix}:{{{member_id}}}:refreshing"

    def pending(self, member_id: str) -> str:
        """ZSET group id -> enqueued at of its oldest pending item: the portal's groups a flush
        may take (a group waiting on its own backoff or parked connector leaves it until then)."""
        return f"{self.prefix}:{{{member_id}}}:pending"

    def trigger(self, member_id: str) -> str:
        """STRING 'task_id:at', with expiry: the one delayed flush task scheduled for the portal."""
        return f"{self.prefix}:{{{member_id}}}:trigger"

    def slot(self, member_id: str) -> str:
        """STRING the time of the slot of the portal's budget reserved for its next flush."""
        return f"{self.prefix}:{{{member_id}}}:slot"

    def share(self, member_id: str) -> str:
        """ZSET lease id -> called at: the portal's calls within the budget share's window."""
        return f"{self.prefix}:{{{member_id}}}:share"

    def groups(self, member_id: str) -> str:
        """SET of the portal's group ids (to resume them on portal.register)."""
        return f"{self.prefix}:{{{member_id}}}:groups"

    # per portal: `delivery.sent` records and the receipts waiting for theirs
    def receipt_keys(self, member_id: str) -> dict[str, str]:
        """The keys the receipt scripts name (`records_key`, ...), with the portal's hash tag.

        - records: HASH record id (`<connector>:<im.message_id>`) -> JSON record;
        - ids: HASH `<connector> NUL <chat> NUL <external id>` -> record id;
        - kept: ZSET record id -> sent at (every kept record: the cap, the expiry);
        - open: ZSET record id -> sent at (the records not confirmed yet);
        - waiting / waiting_data: ZSET / HASH of receipts whose `sent` has not arrived (by the
          same field as `ids`) -> deadline / JSON."""
        base = f"{self.prefix}:{{{member_id}}}:sent"
        return {
            "records_key": f"{base}:records",
            "ids_key": f"{base}:ids",
            "kept_key": f"{base}:kept",
            "open_key": f"{base}:open",
            "waiting_key": f"{base}:waiting",
            "waiting_data_key": f"{base}:waiting:data",
            "receipts_due_key": self.receipts_due,
            "stats_key": self.stats,
        }

    # per group
    def _group(self, group: Group, what: str) -> str:
        return f"{self.prefix}:{{{group.portal}}}:g:{group.connector}:{group.line}:{what}"

    def items(self, group: Group) -> str:
        """HASH im.message_id -> JSON {el, t}: every pending or leased confirmation."""
        return self._group(group, "items")

    def queue(self, group: Group) -> str:
        """ZSET im.message_id -> enqueued at: pending, not leased."""
        return self._group(group, "queue")

    def leased(self, group: Group) -> str:
        """ZSET im.message_id -> enqueued at: in the current flush."""
        return self._group(group, "leased")

    def lease(self, group: Group) -> str:
        """STRING lease id, with expiry: who is flushing the group."""
        return self._group(group, "lease")

    def meta(self, group: Group) -> str:
        """HASH not_before, failures, attempts, first_attempt_at, last_attempt_at."""
        return self._group(group, "meta")

    def warned_without_message_id(self, group: Group) -> str:
        """STRING, with expiry: the group's confirmations without message.id were warned about."""
        return self._group(group, "nomid")

    def delivered(self, group: Group) -> str:
        """ZSET im.message_id -> delivered at, for DELIVERY_DEDUP_WINDOW_S (expires with it)."""
        return self._group(group, "delivered")

    def group_keys(self, group: Group) -> dict[str, str]:
        """A group's keys, and its portal's, by the names the scripts give them (`items_key`,
        ...): a script picks those it names."""
        p = group.portal
        return {
            "items_key": self.items(group),
            "queue_key": self.queue(group),
            "leased_key": self.leased(group),
            "lease_key": self.lease(group),
            "meta_key": self.meta(group),
            "portal_key": self.portal(p),
            "bucket_key": self.bucket(p),
            "inflight_key": self.inflight(p),
            "due_key": self.due,
            "ticks_key": self.ticks,
            "soon_key": self.soon,
            "stats_key": self.stats,
            "groups_key": self.groups(p),
            "dead_key": self.dead,
            "dead_data_key": self.dead_data,
            "trigger_key": self.trigger(p),
            "pending_key": self.pending(p),
            "refresh_lock_key": self.refresh_lock(p),
            "refresh_waiters_key": self.refresh_waiters(p),
            "refreshing_key": self.refreshing(p),
            "delivered_key": self.delivered(group),
        }

    def portal_keys(self, member_id: str) -> dict[str, str]:
        """A portal's keys (and the fleet-wide ones a flush touches) by their script names."""
        p = member_id
        return {
            "portal_key": self.portal(p),
            "bucket_key": self.bucket(p),
            "share_key": self.share(p),
            "slot_key": self.slot(p),
            "inflight_key": self.inflight(p),
            "pending_key": self.pending(p),
            "trigger_key": self.trigger(p),
            "due_key": self.due,
            "ticks_key": self.ticks,
            "soon_key": self.soon,
            "stats_key": self.stats,
            "refresh_lock_key": self.refresh_lock(p),
            "refresh_waiters_key": self.refresh_waiters(p),
            "refreshing_key": self.refreshing(p),
        }

    def lease_keys(self, group: Group) -> dict[str, str]:
        """The keys of one group a portal's flush leases (begin.lua's GROUP_KEYS)."""
        return {
            "items_key": self.items(group),
            "queue_key": self.queue(group),
            "leased_key": self.leased(group),
            "lease_key": self.lease(group),
            "meta_key": self.meta(group),
        }
