"""The fleet shape of `make bench`: many light portals, several lines each.

    dense   2 portals x 4 lines at the documented 2/s, burst 50: 4,000 confirmations at once,
            and the same two portals paced at 100/s (so the CPU of spreading traffic over
            portals is told apart from the CPU of pacing it)
    fleet   300 portals x 4 lines, each portal at the documented 2/s, burst 50; confirmations
            spread evenly over every (portal, line), offered at a steady rate for a while;
            rates tried from low to high, until one is not sustained (a short search)

Both on the run's own workers (2 processes x `-c 2`, default settings, beat on), in the same
run as the other tables. Per row: calls and Celery tasks per confirmation, worker CPU per
confirmation (bench/meter.py), p50/p99 latency (enqueue to the simulator's first arrival), and
each portal's largest share of its budget: the most calls it got in any 10 s, over the 20 its
documented 2/s allows in 10 s. A rate is *sustained* when everything arrived and p99 is within
the flush window + 2 s. The simulator's records are cleared before each row (rows computed
earlier are already done), so each row reads only its own calls.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from typing import Any

from bench import meter
from bench.context import (
    CONNECTOR,
    DOC,
    WINDOW_S,
    Ctx,
    element,
    register_many,
    start_fleet,
    wait_for,
)
from bench.measure import Sent, first_arrivals, percentile
from worker.names import FLUSH_QUEUE, INGEST_QUEUE

#: the budget share is measured over this window, against the documented 2/s
SHARE_WINDOW_S = 10.0
BUDGET_PER_WINDOW = DOC["rate_per_s"] * SHARE_WINDOW_S
#: the issue's bound: at most 5 calls per portal in any 10 s (a quarter of 20)
MAX_CALLS_PER_WINDOW = 5
GOAL_P99_S = WINDOW_S + 2.0
#: the setting the unshared row lifts to 1
SHARE_SETTING = "DELIVERY_PORTAL_BUDGET_SHARE"


@dataclass(frozen=True)
class FleetPlan:
    portals: int = 300
    lines: int = 4
    duration_s: float = 30.0  # each rate is offered this long
    # (175 and 250: the grid is finer where the goal, half the fast portal's rate, falls)
    rates: tuple[float, ...] = (50.0, 100.0, 150.0, 175.0, 200.0, 250.0, 300.0)
    always: float = 100.0  # measured even when a lower rate was not sustained
    drain_s: float = 20.0  # after the last enqueue: everything must have arrived by then
    settle_cap_s: float = 90.0  # a rate that fell behind: wait this long more for its backlog
    dense_n: int = 4000
    budget_s: float = 300.0  # no new rate starts after this long

    @classmethod
    def quick(cls) -> FleetPlan:
        return cls(portals=100, duration_s=8.0, rates=(50.0, 100.0), dense_n=1000, budget_s=60)


@dataclass
class FleetRow:
    shape: str
    offered: float  # confirmations/s asked for (0: all at once)
    enqueue_rate: float  # what the producer reached
    sent: int
    delivered: int
    calls: int
    batch_requests: int
    r503: int
    used: meter.Reading
    p50_s: float | None
    p99_s: float | None
    max_calls_10s: int  # the most calls any portal got in any 10 s
    portals_over: int  # portals that got more than MAX_CALLS_PER_WINDOW in some 10 s
    backlog: tuple[int, int] = (0, 0)  # the longest ingest and flush queues seen, sampled each s
    notes: list[str] = field(default_factory=list)

    def per_conf(self, value: float) -> float | None:
        return value / self.delivered if self.delivered else None

    @property
    def cpu_ms(self) -> float | None:
        per = self.per_conf(self.used.cpu_s)
        return None if per is None else 1000 * per

    @property
    def share(self) -> float:
        return self.max_calls_10s / BUDGET_PER_WINDOW

    @property
    def sustained(self) -> bool:
        return self.delivered == self.sent and self.p99_s is not None and self.p99_s <= GOAL_P99_S

    @property
    def reached(self) -> bool:
        """The producer offered the rate asked for (within 5 %): else the row measured the
        producer's pace, not that rate."""
        return not self.offered or self.enqueue_rate >= 0.95 * self.offered


def highest(rows: list[FleetRow]) -> FleetRow | None:
    """The highest offered rate sustained, the producer having reached it."""
    ok = [r for r in rows if r.sustained and r.reached]
    return max(ok, key=lambda r: r.offered) if ok else None


def max_in_window(times: list[float], window_s: float = SHARE_WINDOW_S) -> int:
    """The most of `times` that fall in any `window_s`-long window."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class Backlog:
    """The longest ingest (`celery`) and flush queues seen, sampled at most once a second."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx, self.most, self.next_at = ctx, (0, 0), 0.0

    def sample(self) -> None:
        if time.time() >= self.next_at:
            self.next_at = time.time() + 1.0
            now = (int(self.ctx.r.llen(INGEST_QUEUE)), int(self.ctx.r.llen(FLUSH_QUEUE)))
            self.most = (max(self.most[0], now[0]), max(self.most[1], now[1]))


def _paced(ctx: Ctx, shape: list[tuple[str, int]], n: int, rate: float, backlog: Backlog) -> Sent:
    """n confirmations spread evenly over `shape`'s (portal, line) pairs; `rate` per second
    (0: as fast as the producer goes)."""
    base, sent = ctx.ids(n), Sent(t0=time.time())
    for i in range(n):
        due = sent.t0 + i / rate if rate else 0.0
        backlog.sample()
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        portal, line = shape[i % len(shape)]
        sent.enqueued[base + i] = time.time()
        ctx.producer.confirm(portal=portal, connector=CONNECTOR, line=line, **element(base + i))
    sent.t_end = time.time()
    return sent


def _arrived(ctx: Ctx) -> int:
    return int(ctx.sim.state(records=False)["accepted_total"])


def measure(ctx: Ctx, label: str, shape: list[tuple[str, int]], n: int, rate: float,
            drain_s: float, settle_cap_s: float) -> FleetRow:  # fmt: skip
    """Offer n confirmations over `shape` at `rate`, wait (up to `drain_s` after the last) for
    them all; the row. A row that fell behind waits up to `settle_cap_s` more for its backlog,
    so that the next row starts on an idle pipeline."""
    portals = {p for p, _ in shape}
    ctx.sim._call("POST", "clear_records", None)
    before, backlog = meter.read(ctx), Backlog(ctx)
    sent = _paced(ctx, shape, n, rate, backlog)

    def arrived() -> bool:
        backlog.sample()
        return _arrived(ctx) >= n

    drained = wait_for(arrived, sent.t_end + drain_s, 0.2)
    used = meter.read(ctx) - before
    state = ctx.sim.state(records=True)
    if not drained:
        wait_for(lambda: _arrived(ctx) >= n, time.time() + settle_cap_s, 0.5)
    row = _row(label, rate, sent, state, portals, used, drained, drain_s)
    row.backlog = backlog.most
    return row


def _row(label: str, rate: float, sent: Sent, state: dict[str, Any], portals: set[str],
         used: meter.Reading, drained: bool, drain_s: float) -> FleetRow:  # fmt: skip
    records = [r for r in state["accepted"] if r["member_id"] in portals]
    calls = [c for c in state["calls"] if c["member_id"] in portals]
    first = first_arrivals(records, sent)
    latencies = sorted(first[m] - sent.enqueued[m] for m in first)
    per_portal: dict[str, list[float]] = {}
    for c in calls:
        per_portal.setdefault(c["member_id"], []).append(c["at"])
    windows = [max_in_window(ts) for ts in per_portal.values()]
    row = FleetRow(
        label, rate, sent.enqueue_rate, len(sent.enqueued), len(first), len(calls),
        sum(1 for c in calls if c["method"] == "batch"),
        sum(1 for c in calls if c["status"] == 503), used,
        percentile(latencies, 50), percentile(latencies, 99), max(windows, default=0),
        sum(1 for w in windows if w > MAX_CALLS_PER_WINDOW),
    )  # fmt: skip
    if not drained:
        missing = row.sent - row.delivered
        row.notes.append(f"{missing:,} not arrived {drain_s:g} s after the last enqueue")
    if not row.reached:
        row.notes.append(f"producer reached {row.enqueue_rate:.0f}/s only")
    return row


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class FleetResults:
    plan: FleetPlan
    dense: FleetRow
    rates: list[FleetRow]
    #: the dense shape offered at `plan.always` per second, as the fleet is
    dense_paced: FleetRow | None = None
    #: when it ran, and the load average (1, 5, 15 min) before and after: the machine is shared
    measured: str = ""
    #: from the first rate not sustained up, on workers with the budget share lifted (1), until
    #: one is not sustained again: tells the share's bound (a portal's calls in 10 s) from the
    #: machine's
    unshared: list[FleetRow] = field(default_factory=list)

    @property
    def best(self) -> FleetRow | None:
        """The highest offered rate that was sustained."""
        return highest(self.rates)


def run(ctx: Ctx, plan: FleetPlan) -> FleetResults:
    """The dense row, then the fleet at rising rates until one is not sustained (and at
    least up to `plan.always`), within `plan.budget_s`."""
    load_before = _load()
    dense_portals = ["dense-a", "dense-b"]
    register_many(ctx, dense_portals, DOC)
    dense_shape = [(p, line) for line in range(1, 5) for p in dense_portals]
    dense = measure(ctx, "dense: 2 portals × 4 lines", dense_shape, plan.dense_n, 0.0,
                    ctx.timeout_s, 0.0)  # fmt: skip
    paced = measure(ctx, "dense: 2 portals × 4 lines", dense_shape,
                    int(plan.always * plan.duration_s), plan.always, plan.drain_s,
                    plan.settle_cap_s)  # fmt: skip
    fleet_portals = [f"fleet-{i:04d}" for i in range(plan.portals)]
    register_many(ctx, fleet_portals, DOC)
    shape = [(p, line) for line in range(1, plan.lines + 1) for p in fleet_portals]
    label = f"fleet: {plan.portals} portals × {plan.lines} lines"
    rows: list[FleetRow] = []
    started = time.time()
    for rate in plan.rates:
        if time.time() - started > plan.budget_s:
            break
        n = int(rate * plan.duration_s)
        row = measure(ctx, label, shape, n, rate, plan.drain_s, plan.settle_cap_s)
        rows.append(row)
        print(f"fleet {rate:g}/s: p99 {row.p99_s}, cpu {row.cpu_ms} ms/conf", flush=True)
        if not row.sustained and rate >= plan.always:
            break
    missed = rows[-1] if rows and not rows[-1].sustained else None
    unshared = _without_share(ctx, plan, label, shape, missed.offered, started) if missed else []
    measured = (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}, load average {load_before} before, "
        f"{_load()} after"
    )
    return FleetResults(plan, dense, rows, paced, measured, unshared)


def _without_share(
    ctx: Ctx,
    plan: FleetPlan,
    label: str,
    shape: list[tuple[str, int]],
    first: float,
    started: float,
) -> list[FleetRow]:
    """The fleet from rate `first` up, until one is not sustained, on fresh workers whose
    DELIVERY_PORTAL_BUDGET_SHARE is 1 (no share: a portal's whole budget); they are stopped
    after (the run's workers are stopped first)."""
    if ctx.workers:
        ctx.procs.stop(ctx.workers)
    env, ctx.env = ctx.env, {**ctx.env, SHARE_SETTING: "1"}
    try:
        workers = start_fleet(ctx, "worker", "celery,flush", ["unshared1", "unshared2"], True)
    finally:
        ctx.env = env
    rows: list[FleetRow] = []
    try:
        for rate in (r for r in plan.rates if r >= first):
            if rows and time.time() - started > plan.budget_s + 120:
                break
            row = measure(ctx, f"{label}, share 1", shape, int(rate * plan.duration_s), rate,
                          plan.drain_s, plan.settle_cap_s)  # fmt: skip
            rows.append(row)
            print(f"fleet {rate:g}/s, share 1: p99 {row.p99_s}, cpu {row.cpu_ms} ms/conf")
            if not (row.sustained and row.reached):  # (a higher rate would not be reached)
                break
    finally:
        ctx.procs.stop(workers)
    return rows
