"""The demo's load (what `make run` sends, and what it counts as sent) and its progress view
(a snapshot of the fleet's and the simulator's counters, and when everything is delivered)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import redis
import requests

from b24producer import Producer
from worker.store.keys import Keys

PORTALS = ("demoportal1", "demoportal2", "demoportal3")
LINES = (1, 2)
CONNECTOR = "demo_connector"
TOKEN_TTL_S = 20  # the simulator's token lifetime: the trickle shows refreshes
TRICKLE_EVERY_S = 5.0


# -- the demo load ---------------------------------------------------------------------------


@dataclass
class Load:
    """What was sent, to tell when everything deliverable is delivered."""

    valid: int = 0  # valid confirmations sent, duplicates included
    unique: int = 0
    invalid: int = 0
    next_id: int = 1000

    def confirmation(self, portal: str, line: int) -> dict[str, Any]:
        self.next_id += 1
        return {
            "portal": portal,
            "connector": CONNECTOR,
            "line": line,
            "im": {"chat_id": 300 + line, "message_id": self.next_id},
            "message": {"id": [f"ext-{self.next_id}"], "date": int(time.time())},
            "chat": {"id": f"channel-{line}"},
        }


def enqueue_load(producer: Producer, load: Load, count: int) -> None:
    """`count` unique confirmations over every (portal, line); every 25th is sent twice in a
    row (coalesced while pending); three invalid ones (rejected, they block nothing)."""
    groups = [(p, line) for p in PORTALS for line in LINES]
    for i in range(count):
        portal, line = groups[i % len(groups)]
        item = load.confirmation(portal, line)
        producer.confirm(**item)
        load.valid += 1
        load.unique += 1
        if i % 25 == 0:
            producer.confirm(**item)
            load.valid += 1
    bad = load.confirmation(PORTALS[0], 1)
    invalid: list[dict[str, Any]] = [
        {**bad, "line": 0},
        {**bad, "im": {"chat_id": 301}},
        {**bad, "message": {"id": ["ext-x"], "date": -5}},
    ]
    # Producer.confirm refuses these before sending (InvalidInput): they go as another
    # producer (another language, an older helper) would send them, to show the worker's side
    for item in invalid:
        producer.app.send_task("delivery.confirm", kwargs=item, retry=False)
        load.invalid += 1


def trickle(producer: Producer, load: Load) -> None:
    """One confirmation per portal: live traffic, so expired tokens get refreshed."""
    for portal in PORTALS:
        producer.confirm(**load.confirmation(portal, LINES[0]))
        load.valid += 1
        load.unique += 1


# -- progress --------------------------------------------------------------------------------


@dataclass
class Snapshot:
    stats: dict[str, int]
    pending_groups: int
    sim: dict[str, int]

    def get(self, name: str) -> int:
        return self.stats.get(name, 0)

    def done(self, load: Load) -> bool:
        settled = self.get("delivered") + self.get("dead_lettered")
        return (
            # a repeat is coalesced while its first copy is pending, deduplicated once delivered
            self.get("ingested") + self.get("coalesced") + self.get("deduplicated") >= load.valid
            and self.get("rejected") >= load.invalid
            and settled >= self.get("ingested")
            and self.pending_groups == 0
        )

    def line(self, elapsed_s: float) -> str:
        return (
            f"[{elapsed_s:5.0f}s] ingested {self.get('ingested')} | delivered "
            f"{self.get('delivered')} | coalesced {self.get('coalesced')} | rejected "
            f"{self.get('rejected')} | dead-lettered {self.get('dead_lettered')} | pending groups "
            f"{self.pending_groups} | sim calls {self.sim.get('calls', 0)} (503s "
            f"{self.sim.get('rate_limited_503', 0)}, expired-token 401s "
            f"{self.sim.get('expired_token_401', 0)}) | token refreshes "
            f"{self.get('token_refreshes')}"
        )


def _int(value: bytes | str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


def snapshot(client: redis.Redis, keys: Keys, sim_url: str) -> Snapshot:
    """The fleet's counters under `keys`, its due groups, and the simulator's counters."""
    raw = client.hgetall(keys.stats)
    stats = {(k.decode() if isinstance(k, bytes) else k): _int(v) for k, v in raw.items()}
    pending = int(client.zcard(keys.due))
    sim: dict[str, int] = {}
    with contextlib.suppress(requests.RequestException, ValueError):
        state = requests.get(f"{sim_url}/_sim/state", params={"records": "0"}, timeout=2).json()
        for portal in state.get("portals", {}).values():
            for name, value in portal.get("counters", {}).items():
                sim[name] = sim.get(name, 0) + int(value)
    return Snapshot(stats, pending, sim)


def announce(snap: Snapshot, load: Load) -> None:
    print(
        f"DEMO_RESULT all_delivered=1 delivered={snap.get('delivered')} "
        f"deliverable={snap.get('ingested')} coalesced={snap.get('coalesced')} "
        f"deduplicated={snap.get('deduplicated')} "
        f"rejected={snap.get('rejected')} dead_lettered={snap.get('dead_lettered')}",
        flush=True,
    )
    print(
        f"all {snap.get('ingested')} deliverable confirmations delivered "
        f"({snap.get('coalesced')} duplicates coalesced, {snap.get('deduplicated')} deduplicated, "
        f"{snap.get('rejected')} invalid rejected). "
        f"Still running (Flower is up; one confirmation per portal every {TRICKLE_EVERY_S:.0f}s "
        f"shows token refreshes as {TOKEN_TTL_S}s tokens expire). Ctrl-C to stop.",
        flush=True,
    )
