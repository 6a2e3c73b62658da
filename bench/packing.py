"""The packing and ingest scenarios of `make bench` (run by bench/run.py in the same run).

sparse    one portal at the documented 2/s, burst 50; 100 lines; 50 confirmations/s for 60 s,
          paced: per-line batching (packing off), packed (`packing: "batch"`), and the naive
          baseline (one call per confirmation)
dense     the dense scenario of the main table (2 lines, 2/s) with packing on
fallback  a portal that refuses the method inside `batch`, packing on: everything delivered
          unpacked, no dead letters, packing off after the first refusal
ingest    `delivery.confirm_many` (100 per message) vs `delivery.confirm` vs the no-op task:
          confirmations ingested per second (into a portal not registered, so no flush competes)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import naive
from bench.context import CONNECTOR, DOC, FAST, PREFIX, Ctx
from bench.context import register as register_portal
from bench.measure import Sent, first_arrivals, percentile
from worker.store.keys import text


@dataclass(frozen=True)
class SparsePlan:
    lines: int = 100
    rate_per_s: float = 50.0
    duration_s: float = 60.0
    drain_cap_s: float = 240.0  # after the last enqueue
    naive_cap_s: float = 15.0  # naive: after the last enqueue (it needs ~25 min for all)

    @property
    def n(self) -> int:
        return int(self.rate_per_s * self.duration_s)


@dataclass
class PackRow:
    scenario: str
    sent: int
    delivered: int
    lost: int
    wall_s: float
    requests: int
    r503: int
    p50_s: float | None
    p99_s: float | None
    note: str = ""

    @property
    def per_conf(self) -> float | None:
        return self.requests / self.delivered if self.delivered else None


def _element(mid: int) -> dict[str, Any]:
    return {
        "im": {"chat_id": 1, "message_id": mid},
        "message": {"id": [f"ext-{mid}"], "date": 1738065600},
        "chat": {"id": "c"},
    }


def _paced(
    n: int, rate: float, send: Callable[[int, int], object], base: int, lines: int
) -> dict[int, float]:
    """Send n confirmations at `rate` per second, line after line; message id -> enqueued at."""
    enqueued: dict[int, float] = {}
    t0 = time.time()
    for i in range(n):
        wait = t0 + i / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        enqueued[base + i] = time.time()
        send(base + i, 1 + i % lines)
    return enqueued


def _accepted(ctx: Ctx, portal: str) -> int:
    """The confirmations the simulator accepted for `portal` so far."""
    return int(ctx.sim.state(records=False)["portals"][portal]["accepted"])


def _wait(done: Callable[[], bool], deadline: float, poll_s: float = 0.1) -> bool:
    while not done():
        if time.time() > deadline:
            return False
        time.sleep(poll_s)
    return True


def _portal(ctx: Ctx, portal: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state = ctx.sim.state(records=True)
    return state["portals"][portal], [r for r in state["accepted"] if r["member_id"] == portal]


def _dead(ctx: Ctx) -> int:
    return int(ctx.r.hget(f"{PREFIX}:stats", "dead_lettered") or 0)


def register(ctx: Ctx, portal: str, limits: dict[str, float], packing: str) -> dict[str, Any]:
    return register_portal(ctx, portal, limits, packing=packing)


def _row(
    ctx: Ctx, scenario: str, portal: str, enqueued: dict[int, float], stopped: float, lost: int,
    note: str = "",
) -> PackRow:  # fmt: skip
    state, records = _portal(ctx, portal)
    first = first_arrivals(records, Sent(enqueued=enqueued))
    latencies = sorted(first[m] - enqueued[m] for m in first)
    t0 = min(enqueued.values())
    end = max(first.values()) if len(first) == len(enqueued) else stopped
    c = state["counters"]
    return PackRow(
        scenario, len(enqueued), len(first), lost, end - t0, c["calls"], c["rate_limited_503"],
        percentile(latencies, 50), percentile(latencies, 99), note,
    )  # fmt: skip


def ours_sparse(ctx: Ctx, plan: SparsePlan, packing: str) -> PackRow:
    portal = f"sparse-{packing}"
    register(ctx, portal, DOC, packing)
    dead = _dead(ctx)

    def send(mid: int, line: int) -> object:
        return ctx.producer.confirm(portal=portal, connector=CONNECTOR, line=line, **_element(mid))

    enqueued = _paced(plan.n, plan.rate_per_s, send, ctx.ids(plan.n), plan.lines)
    _wait(lambda: _accepted(ctx, portal) >= plan.n, time.time() + plan.drain_cap_s, 0.2)
    name = "packed (one `batch` per slot)" if packing == "batch" else "per-line batching"
    return _row(ctx, name, portal, enqueued, time.time(), _dead(ctx) - dead)


def naive_sparse(ctx: Ctx, plan: SparsePlan) -> PackRow:
    portal = "sparse-naive"
    creds = ctx.sim.add_portal(portal, DOC["rate_per_s"], DOC["burst"])
    ctx.r.delete(naive.NAIVE_STATS)

    def send(mid: int, line: int) -> object:
        kwargs = {
            "endpoint": creds["client_endpoint"], "token": creds["access_token"],
            "connector": CONNECTOR, "line": line, "element": _element(mid),
        }  # fmt: skip
        return ctx.producer.app.send_task(
            naive.NAIVE_TASK, kwargs=kwargs, queue=naive.NAIVE_QUEUE, retry=False
        )

    enqueued = _paced(plan.n, plan.rate_per_s, send, ctx.ids(plan.n), plan.lines)
    time.sleep(plan.naive_cap_s)  # a fixed cap, not a wait for a condition: naive never drains
    stopped = time.time()
    ctx.r.delete(naive.NAIVE_QUEUE)
    gave_up = int(ctx.r.hget(naive.NAIVE_STATS, "gave_up") or 0)
    row = _row(ctx, "naive (1 call per confirmation)", portal, enqueued, stopped, gave_up)
    row.note = (
        f"stopped {plan.naive_cap_s:.0f} s after the last enqueue, {row.sent - row.delivered:,} "
        "not delivered by then; latency of the delivered only; *lost*: gave up after 3 attempts"
    )
    return row


def _all_at_once(ctx: Ctx, portal: str, n: int, lines: int) -> dict[int, float]:
    """Send n confirmations to `portal` as fast as the producer goes, line after line, then
    wait (up to the plan's timeout) until the portal accepted them; message id -> enqueued at."""
    base, enqueued = ctx.ids(n), {}
    for i in range(n):
        mid = base + i
        enqueued[mid] = time.time()
        ctx.producer.confirm(
            portal=portal, connector=CONNECTOR, line=1 + i % lines, **_element(mid)
        )
    _wait(lambda: _accepted(ctx, portal) >= n, time.time() + ctx.timeout_s, 0.05)
    return enqueued


def dense_packed(ctx: Ctx, n: int) -> PackRow:
    """The main table's 2/s scenario (2 lines), with packing on."""
    portal = "dense-packed"
    register(ctx, portal, DOC, "batch")
    dead = _dead(ctx)
    enqueued = _all_at_once(ctx, portal, n, 2)
    return _row(ctx, "packed, dense (2 lines)", portal, enqueued, time.time(), _dead(ctx) - dead)


def fallback(ctx: Ctx, n: int = 1000, lines: int = 20) -> tuple[PackRow, dict[str, str]]:
    """A portal that refuses the method inside `batch`, registered with packing on."""
    portal = "refuses-batch"
    register(ctx, portal, FAST, "batch")
    ctx.sim._call("POST", "refuse_in_batch", {"portal": portal})
    dead = _dead(ctx)
    enqueued = _all_at_once(ctx, portal, n, lines)
    row = _row(ctx, "refusing portal, packing on", portal, enqueued, time.time(), _dead(ctx) - dead)
    state, _ = _portal(ctx, portal)
    off = {
        text(k): text(v)
        for k, v in ctx.r.hgetall(f"{PREFIX}:{{{portal}}}:portal").items()
        if text(k).startswith("packing")
    }
    info = {
        "batch_requests": str(state["counters"]["batch_requests"]),
        "packing_off_reason": off.get("packing_off_reason", "(not off)"),
        "lines": str(lines),
    }
    return row, info


@dataclass
class IngestRow:
    scenario: str
    confirmations: int
    messages: int
    wall_s: float
    rate: float
    processes: int

    @property
    def per_process(self) -> float:
        return self.rate / self.processes


def _ingested(ctx: Ctx) -> int:
    return int(ctx.r.hget(f"{PREFIX}:stats", "ingested") or 0)


def ingest_many(ctx: Ctx, n: int, per_message: int = 100, lines: int = 10) -> IngestRow:
    """`delivery.confirm_many`, `per_message` confirmations each, over `lines` groups."""
    before, base = _ingested(ctx), ctx.ids(n)
    messages = n // per_message
    t0 = time.time()
    for m in range(messages):
        batch = [
            {"portal": "ingest-many", "connector": CONNECTOR, "line": 1 + i % lines,
             **_element(base + m * per_message + i)}
            for i in range(per_message)
        ]  # fmt: skip
        ctx.producer.confirm_many(batch)
    _wait(lambda: _ingested(ctx) - before >= messages * per_message, t0 + 120, 0.01)
    wall = time.time() - t0
    count = _ingested(ctx) - before
    name = f"`delivery.confirm_many`, {per_message} per message ({lines} lines each)"
    return IngestRow(name, count, messages, wall, count / wall, 4)


def ingest_one(ctx: Ctx, n: int) -> IngestRow:
    before, base = _ingested(ctx), ctx.ids(n)
    t0 = time.time()
    for i in range(n):
        ctx.producer.confirm(
            portal="ingest-one", connector=CONNECTOR, line=1 + i % 10, **_element(base + i)
        )
    _wait(lambda: _ingested(ctx) - before >= n, t0 + 120, 0.01)
    wall = time.time() - t0
    count = _ingested(ctx) - before
    return IngestRow("`delivery.confirm`, one per message", count, n, wall, count / wall, 4)


@dataclass
class Results:
    sparse: dict[str, PackRow]
    dense_packed: PackRow
    fallback: PackRow
    fallback_info: dict[str, str]
    ingest: list[IngestRow]
    plan: SparsePlan


def run_ours(ctx: Ctx, plan: SparsePlan, n_dense: int, n_ingest: int, n_one: int) -> Results:
    """The scenarios that run on the pipeline's workers (the naive one runs on its own fleet)."""
    sparse = {
        "per_line": ours_sparse(ctx, plan, "off"),
        "packed": ours_sparse(ctx, plan, "batch"),
    }
    dense = dense_packed(ctx, n_dense)
    fb, info = fallback(ctx)
    ingest = [ingest_many(ctx, n_ingest), ingest_one(ctx, min(n_ingest, n_one))]
    return Results(sparse, dense, fb, info, ingest, plan)
