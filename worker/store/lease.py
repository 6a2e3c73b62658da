"""What `begin.lua` answers: the groups a portal's flush leased, and how it started."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from worker.store.keys import Group
from worker.store.kinds import Begun
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
    started_at: float
    failures: int
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
            started_at=float(shared["started_at"]),
            failures=int(own["failures"]),
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
