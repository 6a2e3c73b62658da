"""An upgrade loses nothing: state written by the previous release's scripts (pending, leased by
a flusher that died, waiting on a backoff, a parked portal, dead letters, and the per-group
triggers and due entries they kept) is delivered by this release, every confirmation once.

The previous release's scripts run as they were (tests/fixtures/release_c0906ce/); its flush
trigger was per group, and its groups are not in the portal's pending index: the sweep and the
queued flush tasks (which name a group, as before) bring each group into this release's flow.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from b24sim import PortalConfig, Simulator
from tests.harness import dead_letters, stats, wait_for
from tests.inprocess.conftest import SentTasks, element, register
from worker.flush.flow import flush
from worker.ingest.validation import registration
from worker.names import FLUSH_TASK
from worker.ops import records
from worker.runtime import Runtime
from worker.store.keys import Group, Keys
from worker.store.scripts import Bound, Spec

PREVIOUS = Path(__file__).parent.parent / "fixtures" / "release_c0906ce"
NAMED = re.compile(r"^local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]", re.MULTILINE)
KEYS = Keys()
PENDING, LEASED, WAITING = (Group("p1", "myconnector", n) for n in (1, 2, 3))
PARKED, DEAD = Group("p2", "myconnector", 1), Group("p1", "myconnector", 4)


def previous(r: redis.Redis, name: str) -> Bound:
    """The previous release's script `name`, with its own prelude and helpers."""
    body = (PREVIOUS / f"{name}.lua").read_text()
    parts = ["prelude.lua", "common.lua", "limiter.lua", "triggers.lua"]
    source = "\n".join([*((PREVIOUS / p).read_text() for p in parts), body])
    named: dict[str, list[str]] = {"KEYS": [], "ARGV": []}
    for local, table, _ in NAMED.findall(body):
        named[table].append(local)
    return Bound(r, Spec(name, tuple(named["KEYS"]), tuple(named["ARGV"]), source))


class PreviousRelease:
    """What the previous release's workers did, by its scripts and key layout."""

    def __init__(self, r: redis.Redis, rt: Runtime) -> None:
        self.r, self.rt, s = r, rt, rt.settings
        self.ingest, self.begin, self.settle = (
            previous(r, n) for n in ("ingest", "begin", "settle")
        )
        self.timing = {"max_countdown_s": s.max_countdown_s, "grace_s": rt.buffer.grace_s}

    def keys(self, group: Group) -> dict[str, str]:
        # its flush trigger was the group's own key
        old_trigger = f"{KEYS.prefix}:{{{group.portal}}}:g:{group.connector}:{group.line}:trigger"
        return {**KEYS.group_keys(group), "trigger_key": old_trigger}

    def add(self, group: Group, first: int, n: int) -> None:
        s = self.rt.settings
        for i in range(first, first + n):
            self.ingest(
                self.keys(group),
                {
                    "group_id": group.id,
                    "message_id": str(i),
                    "element_json": json.dumps(element(i)),
                    "batch_size": s.batch_size,
                    "window_s": s.flush_window_s,
                    "task_id": str(uuid.uuid4()),
                    **self.timing,
                    "dedup_window_s": s.dedup_window_s,
                },
            )

    def lease(self, group: Group) -> dict[str, Any]:
        s = self.rt.settings
        lease_id = str(uuid.uuid4())
        reply = self.begin(
            self.keys(group),
            {
                "group_id": group.id,
                "lease_id": lease_id,
                "batch_size": s.batch_size,
                "window_s": 0,  # (the previous release leased a full or old group: no wait)
                "lease_ttl_s": s.lease_ttl_s,
                "default_rate_per_s": s.rate_per_s,
                "default_rate_burst": s.rate_burst,
                "max_inflight": s.portal_max_inflight,
                "own_task_id": "previous",
                "task_id": str(uuid.uuid4()),
                **self.timing,
                "lease_margin_s": s.sweep_interval_s,
            },
        )
        assert reply["kind"] == "leased", reply
        return {"lease_id": lease_id, "ids": reply["lease"]["ids"]}

    def end(self, group: Group, lease: dict[str, Any], action: str, **extra: Any) -> None:
        s = self.rt.settings
        self.settle(
            self.keys(group),
            {
                "group_id": group.id,
                "lease_id": lease["lease_id"],
                "action": action,
                "delay_s": extra.get("delay_s", 0),
                "portal_wide": extra.get("portal_wide", 0),
                "drain": 0,
                "counts_failure": extra.get("counts_failure", 0),
                "code": extra.get("code", ""),
                "description": "",
                "batch_size": s.batch_size,
                "window_s": s.flush_window_s,
                "default_rate_per_s": s.rate_per_s,
                "default_rate_burst": s.rate_burst,
                "task_id": str(uuid.uuid4()),
                **self.timing,
                "sent_ids_json": json.dumps(lease["ids"]),
                "operating_reset_at": "",
                "dedup_window_s": s.dedup_window_s,
            },
        )


def run_fleet(rt: Runtime, sent: SentTasks) -> None:
    """One round of what this release's workers and beat do: the flush tasks sent (the previous
    release's among them), then the sweep's."""
    calls, sent.calls[:] = list(sent.calls), []
    groups = [(c.kwargs["group"], c.task_id or "") for c in calls if c.name == FLUSH_TASK]
    groups += [(g.id, "") for g in rt.buffer.claim_due()]
    for group_id, task_id in groups:
        flush(rt, Group.parse(group_id), task_id)


def test_state_written_by_the_previous_release_is_all_delivered(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    rt = make_rt(batch_size=3)
    register(rt, sim)
    register(rt, sim, PortalConfig(member_id="p2"))
    old = PreviousRelease(r, rt)
    old.add(PENDING, 1, 2)  # pending: a partial batch, its per-group trigger claimed
    old.add(LEASED, 11, 3)  # leased by a flusher that then died
    old.lease(LEASED)
    r.pexpire(KEYS.lease(LEASED), 1)
    old.add(WAITING, 21, 3)  # a transient failure: backing off
    old.end(WAITING, old.lease(WAITING), "retry", delay_s=0.3, counts_failure=1)
    old.add(PARKED, 31, 3)  # its portal parked until portal.register
    old.end(PARKED, old.lease(PARKED), "park", delay_s=1e18, portal_wide=1, code="NO_AUTH_FOUND")
    old.add(DEAD, 41, 2)  # dead-lettered
    old.end(DEAD, old.lease(DEAD), "dead_letter", code="ERROR_ARGUMENT")
    assert len(dead_letters(r)) == 2 and stats(r)["pending"] == 11

    # the upgraded fleet: queued flush tasks of the previous release name groups, as now
    for group in (PENDING, WAITING):
        sent(FLUSH_TASK, kwargs={"group": group.id}, task_id="previous")
    creds = sim.issue_credentials("p2").as_register_kwargs()
    rt.portals.register(registration(creds, rt.settings.endpoint_networks))
    rt.buffer.resume_portal("p2")  # as portal.register does
    assert records.replay(rt) == 2

    expected = {str(i) for i in (1, 2, 11, 12, 13, 21, 22, 23, 31, 32, 33, 41, 42)}

    def delivered() -> bool:
        run_fleet(rt, sent)
        return {str(a.im["message_id"]) for a in sim.accepted()} == expected

    wait_for(delivered, 20, what="every confirmation of the previous release delivered")
    assert len(sim.accepted()) == len(expected), "each once"
    s = stats(r)
    assert s["pending"] == 0 and s["delivered"] == len(expected) and not dead_letters(r)
    for group in (PENDING, LEASED, WAITING, PARKED, DEAD):
        assert not r.exists(KEYS.items(group), KEYS.queue(group), KEYS.leased(group))
