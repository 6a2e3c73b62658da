"""What a scenario measured, computed from the simulator's records and counters."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: the bucket counts as full from this share of its burst (ours stops at 45 of 50 on purpose)
FULL = 0.85
#: fewer paced calls than this say too little about the paced rate: no number
MIN_PACED_CALLS = 10


@dataclass
class Sent:
    """What the producer enqueued: when it started and each message's enqueue time."""

    t0: float = 0.0
    t_end: float = 0.0
    enqueued: dict[int, float] = field(default_factory=dict)

    @property
    def enqueue_rate(self) -> float:
        return len(self.enqueued) / max(self.t_end - self.t0, 1e-9)


@dataclass
class Row:
    scenario: str
    portal: str
    sent: int
    delivered: int
    lost: int | None
    wall_s: float
    rate: float
    sustained: float | None = None
    calls: int | None = None
    per_call: float | None = None
    r503: int | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    note: str = ""
    own_floor_s: float | None = None  # permitted rows: t_min at ours' own (smaller) burst


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return None
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


def first_arrivals(records: Iterable[dict[str, Any]], sent: Sent) -> dict[int, float]:
    """message_id -> when the simulator first accepted it (at-least-once may repeat one)."""
    first: dict[int, float] = {}
    for rec in records:
        mid = int(rec["im"]["message_id"])
        if mid in sent.enqueued and (mid not in first or rec["arrived_at"] < first[mid]):
            first[mid] = rec["arrived_at"]
    return first


def sustained_rate(records: list[dict[str, Any]], rate_per_s: float, burst: float) -> float | None:
    """Confirmations/s once calls are paced by the drain: after the portal's bucket, replayed
    from the accepted calls' arrival times, first reaches FULL of its burst."""
    calls: dict[int, list[float]] = {}
    for rec in records:
        calls.setdefault(rec["call_id"], []).append(rec["arrived_at"])
    ordered = sorted((min(ts), len(ts)) for ts in calls.values())
    level, prev, start = 0.0, None, None
    for i, (t, _) in enumerate(ordered):
        level = 1 + (level if prev is None else max(0.0, level - (t - prev) * rate_per_s))
        prev = t
        if level >= FULL * burst:
            start = i
            break
    if start is None or len(ordered) - 1 - start < MIN_PACED_CALLS:
        return None
    window = ordered[-1][0] - ordered[start][0]
    after = sum(n for _, n in ordered[start + 1 :])
    return after / window if window > 0 else None


def sim_row(
    scenario: str,
    portal: str,
    sent: Sent,
    portal_state: dict[str, Any],
    records: list[dict[str, Any]],
    *,
    stopped_at: float,
    lost: int | None,
    limits: dict[str, float],
    note: str = "",
) -> Row:
    """A row for a scenario delivered through the simulator (ours or naive)."""
    first = first_arrivals(records, sent)
    complete = len(first) == len(sent.enqueued)
    end = max(first.values()) if complete else stopped_at
    wall = max(end - sent.t0, 1e-9)
    latencies = sorted(first[m] - sent.enqueued[m] for m in first)
    c = portal_state["counters"]
    return Row(
        scenario=scenario,
        portal=portal,
        sent=len(sent.enqueued),
        delivered=len(first),
        lost=lost,
        wall_s=wall,
        rate=len(first) / wall,
        sustained=sustained_rate(records, limits["rate_per_s"], limits["burst"]),
        calls=c["calls"],
        per_call=c["accepted_messages"] / c["success"] if c["success"] else None,
        r503=c["rate_limited_503"],
        p50_s=percentile(latencies, 50),
        p95_s=percentile(latencies, 95),
        note=note,
    )


def permitted_row(
    portal: str, n: int, rate_per_s: float, burst: int, batch: int, our_burst: int
) -> Row:
    """The portal's ceiling: `burst` calls at once, then `rate_per_s`, `batch` items per call."""
    calls = math.ceil(n / batch)
    t_min = max(0, calls - burst) / rate_per_s
    t_ours = max(0, calls - min(burst, our_burst)) / rate_per_s
    note = f"t_min {t_min:.1f} s ({t_ours:.1f} s at ours' burst {min(burst, our_burst)})"
    return Row(
        scenario="permitted by the portal",
        portal=portal,
        sent=n,
        delivered=n,
        lost=0,
        wall_s=t_min,
        rate=n / t_min if t_min > 0 else math.inf,
        sustained=rate_per_s * batch,
        calls=calls,
        per_call=float(batch),
        r503=0,
        note=note,
        own_floor_s=t_ours,
    )
