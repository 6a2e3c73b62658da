"""The Markdown section of the packing and ingest scenarios (bench/packing.py)."""

from __future__ import annotations

from bench.context import WINDOW_S
from bench.measure import Row
from bench.packing import IngestRow, PackRow, Results
from bench.report import fmt, ratio

COLUMNS = (
    "scenario", "sent", "delivered", "lost", "wall s", "HTTP requests", "requests / conf",
    "503s", "p50 lat s", "p99 lat s", "note",
)  # fmt: skip


def _cells(row: PackRow) -> list[str]:
    return [
        row.scenario, fmt(row.sent), fmt(row.delivered), fmt(row.lost), fmt(row.wall_s, 2),
        fmt(row.requests), fmt(row.per_conf, 3), fmt(row.r503), fmt(row.p50_s, 2),
        fmt(row.p99_s, 2), row.note,
    ]  # fmt: skip


def _table(rows: list[PackRow]) -> list[str]:
    return [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(_cells(r)) + " |" for r in rows),
    ]


def _ingest(rows: list[IngestRow], noop: Row) -> list[str]:
    out = [
        "| ingest | confirmations | messages | wall s | conf/s | conf/s per worker process | "
        "vs no-op task |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.scenario} | {fmt(r.confirmations)} | {fmt(r.messages)} | {fmt(r.wall_s, 2)} "
            f"| {fmt(r.rate)} | {fmt(r.per_process)} | {ratio(r.rate, noop.rate)} |"
        )
    out.append(
        f"| no-op Celery task (main table) | {fmt(noop.delivered)} | {fmt(noop.delivered)} "
        f"| {fmt(noop.wall_s, 2)} | {fmt(noop.rate)} | {fmt(noop.rate / 4)} | 1.00× |"
    )
    return out


def render(res: Results, rows: dict[str, Row]) -> list[str]:
    p = res.plan
    per_line, packed, naive = res.sparse["per_line"], res.sparse["packed"], res.sparse["naive"]
    dense, ours_doc = res.dense_packed, rows["ours_doc"]
    goal = WINDOW_S + 2
    met = packed.p99_s is not None and packed.p99_s <= goal
    dense_ratio = ours_doc.wall_s / dense.wall_s if dense.wall_s else None
    fb, lines = res.fallback, res.fallback_info["lines"]
    return [
        "",
        "## Packing and ingest",
        "",
        f"Sparse lines: one portal at 2/s, burst 50; {p.lines} lines; "
        f"{p.rate_per_s:g} confirmations/s for {p.duration_s:g} s ({p.n:,}), paced.",
        "",
        *_table([per_line, packed, naive]),
        "",
        "| check | value |",
        "|---|---|",
        f"| sparse: packed p99 latency vs the goal (window {WINDOW_S:g} s + 2 s) | "
        f"{fmt(packed.p99_s, 2)} s {'≤' if met else '>'} {goal:g} s: "
        f"{'met' if met else 'NOT met'} |",
        f"| sparse: per-line / packed, HTTP requests per confirmation | "
        f"{ratio(per_line.per_conf, packed.per_conf)} |",
        f"| sparse: per-line / packed, p99 latency | {ratio(per_line.p99_s, packed.p99_s)} |",
        f"| dense (2 lines, {dense.sent:,}): packed wall {fmt(dense.wall_s, 2)} s vs "
        f"{fmt(ours_doc.wall_s, 2)} s (main table, default settings); main / packed | "
        f"{'–' if dense_ratio is None else f'{dense_ratio:.2f}×'} "
        f"(goal ≥ 0.95×: {'met' if dense_ratio and dense_ratio >= 0.95 else 'NOT met'}) |",
        f"| fallback: {fb.sent:,} confirmations over {lines} lines to a portal "
        f"refusing the method inside `batch`, packing on | delivered {fb.delivered:,}, "
        f"dead-lettered {fb.lost}, `batch` requests {res.fallback_info['batch_requests']} "
        f"(≤ DELIVERY_PORTAL_MAX_INFLIGHT in flight when the first refusal came back), packing off "
        f"with reason {res.fallback_info['packing_off_reason']} |",
        "",
        *_ingest(res.ingest, rows["noop"]),
        "",
        "- The sparse rows share the run's conditions: the same workers (2 processes × `-c 2`), "
        "per-line and packed differ only by the portal's registration (`packing`). *HTTP "
        "requests* are the simulator's count of requests to the portal (a `batch` is one); "
        "*lat*: simulator arrival minus enqueue, per confirmation.",
        "- *dense*: the main table's 2/s scenario (2 lines) registered with packing on; it must "
        "cost nothing: at least 0.95× the main table's speed (which runs the default, "
        "`DELIVERY_PACKING=batch`).",
        "- *ingest*: confirmations until the pipeline's `ingested` counter reached them, from "
        "the first enqueue (enqueueing included), into a portal that is not registered (so no "
        "flush competes); 4 worker processes; the no-op row is the main table's.",
    ]
