"""Real workers at the DEFAULT settings (only the trust settings every test run needs:
loopback endpoints and the simulator's OAuth host) beside one hostile portal of each kind
(b24sim/hostile.py: an adversary's behaviours, not platform facts).

What must hold: the healthy portals' confirmations all arrive within 30 s (alone they take a few
seconds), the largest worker process stays under 300 MiB, no worker process dies, each hostile
portal gets a handful of calls and is parked with its confirmations kept, and the `SUCCESS`
answered with numbers no float holds is delivered once. The figures it prints are those of
docs/threat-model.md.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import redis

from b24sim import PortalConfig, Simulator
from devtools.procs import child_env
from tests.harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    Fleet,
    confirmation,
    dead_letters,
    delivered_ids,
    portal_hash,
    producer,
    stats,
    wait_for,
)
from worker.settings import Settings
from worker.store.scripts import PARKED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

#: the trust settings a run against loopback needs; every other setting at its default
TRUST = {
    "DELIVERY_ALLOWED_ENDPOINT_NETWORKS": "public,loopback",
    "BITRIX24_OAUTH_HOSTS": "127.0.0.1",
}
#: the replacing hostile kinds, and the reason each portal is parked with
PARKING = {
    "gzip_bomb": "ANSWER_TOO_LARGE",
    "drip": "ANSWER_TOO_SLOW",
    "deep_json": "ANSWER_MALFORMED",
    "bare_number": "ANSWER_MALFORMED",
}
HEALTHY = [f"ok{i}" for i in range(5)]
PER_PORTAL = 20
HEALTHY_WITHIN_S = 30.0
MEMORY_CAP = 300 * 1024 * 1024
#: three calls of the drip (two at once, then one: DELIVERY_PORTAL_MAX_INFLIGHT, then one in
#: flight while its bad answers are fresh), each ended by the 65 s total deadline
DRIP_PARKED_WITHIN_S = 3 * Settings().http_total_timeout_s + 40


class DefaultsFleet(Fleet):
    """A fleet whose workers run at the default settings (no FAST_ENV)."""

    def environment(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BITRIX24_"))}
        env = child_env(base, **TRUST)
        env.update(
            REDIS_URL=self.redis_url,
            BITRIX24_CLIENT_ID=CLIENT_ID,
            BITRIX24_CLIENT_SECRET=CLIENT_SECRET,
        )
        env.update(extra)
        return env


@dataclass
class Memory:
    """The largest RSS any process of the worker's tree had, sampled every 50 ms."""

    root: int
    peak: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                top = psutil.Process(self.root)
                procs = [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    self.peak = max(self.peak, proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    continue


def _confirm(p: object, portals: list[str], first: int) -> None:
    for portal in portals:
        for i in range(PER_PORTAL):
            p.confirm(**confirmation(portal, first + i, line=1 + i % 2))  # type: ignore[attr-defined]


def _healthy_done(sim: Simulator, first: int) -> bool:
    want = set(range(first, first + PER_PORTAL))
    return all(want <= set(delivered_ids(sim, portal)) for portal in HEALTHY)


def test_hostile_portals_cost_a_bounded_share_and_end_parked(
    sim: Simulator, redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    fleet = DefaultsFleet(redis_url, sim, tmp_path)
    p = producer(redis_url)
    try:
        for portal in HEALTHY:
            p.register_portal(**sim.add_portal(PortalConfig(member_id=portal)).as_register_kwargs())
        # more worker slots than one portal's in-flight cap (DELIVERY_PORTAL_MAX_INFLIGHT=2): a
        # fleet with no more slots than that is starved by any slow portal, hostile or not
        worker = fleet.start(concurrency=4, beat=True)
        children = set(worker.pool_pids())
        memory = Memory(worker.process.pid)
        threading.Thread(target=memory.run, daemon=True).start()

        started = time.monotonic()
        _confirm(p, HEALTHY, 1000)
        wait_for(lambda: _healthy_done(sim, 1000), HEALTHY_WITHIN_S, what="healthy, alone")
        alone_s = time.monotonic() - started
        quiet_peak = memory.peak

        for kind in [*PARKING, "bad_numbers"]:
            creds = sim.add_portal(PortalConfig(member_id=f"h-{kind}", hostile=kind))
            p.register_portal(**creds.as_register_kwargs())
        hostile = [f"h-{kind}" for kind in [*PARKING, "bad_numbers"]]
        started = time.monotonic()
        _confirm(p, hostile, 1)
        _confirm(p, HEALTHY, 2000)
        wait_for(lambda: _healthy_done(sim, 2000), HEALTHY_WITHIN_S, what="healthy, beside")
        beside_s = time.monotonic() - started

        # the SUCCESS with numbers no float holds: delivered, once
        wait_for(
            lambda: len(delivered_ids(sim, "h-bad_numbers")) >= PER_PORTAL, 30, what="bad numbers"
        )

        def parked(portal: str) -> bool:
            return float(portal_hash(r, portal).get("blocked_until") or 0) >= PARKED

        fast = [f"h-{kind}" for kind in PARKING if kind != "drip"]
        wait_for(lambda: all(parked(x) for x in fast), 90, what="the fast hostile portals parked")
        at_90_s = {x: sim.counters(x)["calls"] for x in hostile}
        wait_for(lambda: parked("h-drip"), DRIP_PARKED_WITHIN_S, what="the drip portal parked")
        drip_parked_s = time.monotonic() - started
        calls = {x: sim.counters(x)["calls"] for x in hostile}
        memory.stop.set()

        print(
            f"\nhealthy alone {alone_s:.1f} s, beside the hostile portals {beside_s:.1f} s; "
            f"peak RSS {memory.peak / 2**20:.0f} MiB (before the hostile ones "
            f"{quiet_peak / 2**20:.0f} MiB); calls until parked {calls}; "
            f"the drip parked after {drip_parked_s:.0f} s"
        )
        assert memory.peak < MEMORY_CAP
        assert worker.process.poll() is None and set(worker.pool_pids()) == children, "no death"
        assert sorted(delivered_ids(sim, "h-bad_numbers")) == list(range(1, PER_PORTAL + 1))
        for kind, reason in PARKING.items():
            portal = f"h-{kind}"
            assert portal_hash(r, portal)["block_reason"] == reason, portal
            assert calls[portal] <= 5 and at_90_s[portal] <= 5, (portal, calls[portal])
            assert delivered_ids(sim, portal) == [], "nothing of it accepted"
        assert not dead_letters(r), "kept, never dead-lettered"
        assert stats(r)["pending"] == len(PARKING) * PER_PORTAL, "their items kept, pending"
    finally:
        fleet.stop()
