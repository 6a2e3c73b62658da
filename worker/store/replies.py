"""What the store's scripts answer, read into dataclasses: an ingest, the start of a portal's flush
(the groups it leased), a settle."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from worker.store.keys import Group
from worker.store.kinds import Added, Begun
from worker.store.triggers import Trigger


@dataclass(frozen=True)
class Lease:
    """One group's batch leased for a call: the items, the portal's token, the group's history.
    The groups leased by one flush share the lease id (and are settled one by one)."""

    group: Group
    lease_id: str
    endpoint: str
    access_token: str = field(repr=False)
    token_version: int
    throttles: int
    #: the portal's rule-breaking answers in a row before this flush
    bad_answers: int
    started_at: float
    failures: int
    #: the group's leases that ran out without a settle (flushers that died), since its last
    #: delivery or dead letter
    expired: int
    ids: list[str]
    elements: list[dict[str, Any]]
    oldest_enqueued_at: float

    @classmethod
    def from_script(
        cls, group: Group, lease_id: str, shared: dict[str, Any], own: dict[str, Any]
    ) -> Lease:
        """A lease from `begin.lua`'s answer: `shared` holds the portal's part (endpoint,
        token, budget), `own` the group's (its failures, items and their age)."""
        return cls(
            group=group,
            lease_id=lease_id,
            endpoint=shared["endpoint"],
            access_token=shared["access_token"],
            token_version=int(shared["token_version"]),
            throttles=int(shared["throttles"]),
            bad_answers=int(shared.get("bad_answers") or 0),
            started_at=float(shared["started_at"]),
            failures=int(own["failures"]),
            expired=int(own.get("expired") or 0),
            ids=list(own["ids"] or []),
            elements=[json.loads(e) for e in own["elements"] or []],
            oldest_enqueued_at=float(own["oldest_enqueued_at"]),
        )


@dataclass(frozen=True)
class Begin:
    """`begin.lua`'s answer: how the flush started, the trigger it claimed (sent for
    `trigger_group`), and the leased groups (none unless `kind` is LEASED or REFRESH)."""

    kind: Begun
    trigger: Trigger | None = None
    trigger_group: Group | None = None
    leases: list[Lease] = field(default_factory=list)
    #: with REFRESH: the error code the portal refused the stored token version with
    refused_code: str = ""
    #: the portal packs: several leased groups go in one `batch` request
    packs: bool = False

    @property
    def lease(self) -> Lease | None:
        """The first leased group, if any."""
        return self.leases[0] if self.leases else None


@dataclass(frozen=True)
class Ingested:
    """`ingest.lua`'s answer. `replicated` is False only when DELIVERY_REPLICA_ACKS replicas
    did not acknowledge the ingest within DELIVERY_REPLICA_TIMEOUT_MS (it then lives on the
    primary alone)."""

    kind: Added
    trigger: Trigger
    replicated: bool = True

    @property
    def added(self) -> bool:
        return self.kind is Added.ADDED


@dataclass(frozen=True)
class GroupIngested:
    """`ingest_many.lua`'s answer for one group: how many of each kind, and its trigger."""

    group: Group
    counts: dict[Added, int]
    trigger: Trigger


@dataclass(frozen=True)
class Settled:
    """`settle.lua`'s answer: how many items it delivered or dead-lettered."""

    settled: int
    trigger: Trigger
