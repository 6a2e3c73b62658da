"""The Markdown section of the fleet scenarios (bench/fleet.py)."""

from __future__ import annotations

from bench.fleet import (
    GOAL_P99_S,
    MAX_CALLS_PER_WINDOW,
    SHARE_WINDOW_S,
    FleetResults,
    FleetRow,
    highest,
)
from bench.report import fmt

COLUMNS = (
    "shape", "offered conf/s", "sent", "delivered", "HTTP calls", "calls / conf", "`batch` calls",
    "503s", "Celery tasks / conf", "worker CPU ms / conf", "p50 lat s", "p99 lat s",
    "max calls / portal / 10 s", "largest budget share", "portals over 5 / 10 s",
    "longest queue: ingest / flush", "sustained", "note",
)  # fmt: skip


def _cells(row: FleetRow) -> list[str]:
    offered = "all at once" if not row.offered else f"{row.offered:g} (got {row.enqueue_rate:.0f})"
    return [
        row.shape, offered, fmt(row.sent), fmt(row.delivered), fmt(row.calls),
        fmt(row.per_conf(row.calls), 3), fmt(row.batch_requests), fmt(row.r503),
        fmt(row.per_conf(row.used.tasks), 2), fmt(row.cpu_ms, 2), fmt(row.p50_s, 2),
        fmt(row.p99_s, 2), fmt(row.max_calls_10s), f"{row.share:.0%}", fmt(row.portals_over),
        f"{row.backlog[0]:,} / {row.backlog[1]:,}", "yes" if row.sustained else "no",
        "; ".join(row.notes),
    ]  # fmt: skip


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}×"


def _tried(rows: list[FleetRow]) -> str:
    """The rates tried, each the producer did not reach with the rate it did reach."""
    return ", ".join(
        f"{r.offered:g}" + ("" if r.reached else f" (the producer reached {r.enqueue_rate:.0f})")
        for r in rows
    )


def _checks(res: FleetResults, fast_rate: float | None) -> list[str]:
    dense, best = res.dense, res.best
    at100 = next((r for r in res.rates if r.offered == 100.0), None)
    # the CPU at 100/s (the rate), else at the highest rate tried
    cpu_row = at100 or (res.rates[-1] if res.rates else None)
    cpu = cpu_row.cpu_ms if cpu_row else None
    out = ["| check | value |", "|---|---|"]
    out.append(
        "| highest offered rate sustained (p99 ≤ window + 2 s, everything arrived) | "
        + (f"{best.offered:g} conf/s" if best else "none of those tried")
        + f" (tried {_tried(res.rates)}) |"
    )
    if at100 is not None:
        ok = at100.sustained and at100.portals_over == 0
        out.append(
            f"| at 100 conf/s: p99 ≤ {GOAL_P99_S:g} s and no portal over "
            f"{MAX_CALLS_PER_WINDOW} calls in any 10 s | p99 {fmt(at100.p99_s, 2)} s, "
            f"max {at100.max_calls_10s} calls / 10 s: {'met' if ok else 'NOT met'} |"
        )
    out.append(
        f"| worker CPU per confirmation, fleet at {cpu_row.offered if cpu_row else 0:g} conf/s "
        f"/ dense all at once | {_ratio(cpu, dense.cpu_ms)} (goal ≤ 1.5×) |"
    )
    paced = res.dense_paced
    if paced is not None:
        out.append(
            f"| worker CPU per confirmation, fleet / dense, both paced at {paced.offered:g} "
            f"conf/s | {_ratio(at100.cpu_ms if at100 else None, paced.cpu_ms)} (goal ≤ 1.5×) |"
        )
    best_lifted = highest(res.unshared)
    if res.unshared:
        calls_s = res.plan.portals * MAX_CALLS_PER_WINDOW / SHARE_WINDOW_S
        out.append(
            f"| highest rate sustained on workers with `DELIVERY_PORTAL_BUDGET_SHARE=1` (a "
            f"portal's whole budget; the default share allows {res.plan.portals} portals "
            f"{calls_s:g} partial calls/s in all) | "
            + (f"{best_lifted.offered:g} conf/s" if best_lifted else "none of those tried")
            + f" (tried {_tried(res.unshared)}) |"
        )
    if fast_rate:  # (a full run: the fast portal's row is in the first table)
        out.append(
            f"| highest fleet rate sustained / ours on the fast portal ({fast_rate:.0f} conf/s, "
            f"same run) | {_ratio(best.offered if best else None, fast_rate)} (goal ≥ 0.5×) |"
        )
        if best_lifted is not None:
            out.append(
                f"| the same, the share lifted (1) | {_ratio(best_lifted.offered, fast_rate)} |"
            )
    return out


TITLE = "## The fleet: many light portals"


def render(res: FleetResults, fast_rate: float | None = None) -> list[str]:
    """The fleet section; `fast_rate`: ours on the fast portal in the same run (conf/s), for
    the rate check (absent with --fleet-only)."""
    p = res.plan
    return [
        "",
        TITLE,
        "",
        f"Measured {res.measured} (this section alone: `python -m bench.run --fleet-only`).",
        "",
        f"Dense: 2 portals × 4 lines at 2/s, burst 50; {res.dense.sent:,} confirmations at once, "
        f"then paced as the fleet is. "
        f"Fleet: {p.portals} portals × {p.lines} lines, each portal at 2/s, burst 50; "
        f"confirmations spread evenly over every line, offered at each rate for "
        f"{p.duration_s:g} s, rising until a rate is not sustained.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *(
            "| " + " | ".join(_cells(r)) + " |"
            for r in [
                res.dense,
                *([res.dense_paced] if res.dense_paced else []),
                *res.rates,
                *res.unshared,
            ]
        ),
        "",
        *_checks(res, fast_rate),
        "",
        "- Same workers as the tables above: 2 processes × `-c 2`, default settings, beat on. "
        "*Celery tasks*: every task the workers started (ingest, flush, sweep), from "
        "`celery inspect stats`; *worker CPU*: user + system CPU of both workers' process trees "
        "(psutil), from the first enqueue until everything arrived.",
        f"- *max calls / portal / {SHARE_WINDOW_S:g} s*: the most requests any one portal got "
        f"in any {SHARE_WINDOW_S:g} s (503s included); *largest budget share*: that over the "
        f"{SHARE_WINDOW_S * 2:g} calls its documented 2/s allows in {SHARE_WINDOW_S:g} s.",
        f"- *sustained*: everything arrived within {p.drain_s:g} s of the last enqueue and p99 "
        f"latency ≤ the flush window + 2 s ({GOAL_P99_S:g} s). The dense rows' latency and "
        "calls per portal are bound by the portals' budget, not by the worker. A burst costs "
        "less CPU per confirmation than the same work paced (each message alone wakes the "
        "consumer, fetches, hands over and acks), so the paced dense row is the fair baseline "
        "for the fleet's spreading; the burst row is the issue's.",
        "- *share 1*: from the first rate not sustained up, offered again to two fresh workers "
        "that differ only in `DELIVERY_PORTAL_BUDGET_SHARE=1` (no share: a portal's whole budget): "
        "above the calls the default share allows the fleet (a quarter of each portal's 2/s), "
        "confirmations wait for a slot of the share and go together, which is the share's "
        "trade, so the row tells the share's bound from the machine's.",
        "- *longest queue*: the most messages waiting in the ingest (`celery`) and `flush` "
        "queues, sampled once a second while offered and draining (a flush trigger with a "
        "countdown waits in a worker, not in the queue).",
        "- The machine is shared (2 cores, other work running): CPU and latency figures are "
        "noisy; compare rows of one run.",
    ]
