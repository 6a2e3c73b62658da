"""Side-by-side throughput of the delivery pipeline and its baselines, measured in one run.

    .venv/bin/python -m bench.run            # `make bench`: ~8-10 minutes
    .venv/bin/python -m bench.run --quick    # ~1 minute, smaller N, printed only
    .venv/bin/python -m bench.run --n 4000 --keep-logs

Everything runs on 127.0.0.1: a private redis-server (devtools.redis_local), the b24sim
simulator in a subprocess, and real Celery workers (2 processes x -c 2) for each contender:
  ours     the project's pipeline (delivery.confirm -> buffer -> delivery.flush), beat sweep on
  naive    bench.naive: one call per confirmation, SDK-style 503 retries (2 s, 3 s), no batching
  no-op    bench.naive's no-op task: the ceiling Celery+Redis gives on this machine
and the portal's permitted rate, computed from its leaky bucket; then the packing and ingest
scenarios (bench/packing.py). The tables go to stdout and (unless --quick) to bench/results.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench import fleet, fleet_report, packing, packing_report, report
from bench.baselines import baseline, noop, permitted, portal_label, probe_simulator
from bench.context import (
    CONNECTOR,
    DOC,
    FAST,
    OUR_BURST,
    PREFIX,
    Ctx,
    accepted,
    dead_lettered,
    element,
    enqueue,
    register,
    session,
    sim_records,
    start_fleet,
    wait_for,
)
from bench.measure import Row, sim_row
from worker.store.keys import Keys, text

RESULTS = Path(__file__).resolve().parent / "results.md"
README = RESULTS.parent.parent / "README.md"
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def replace_fleet_section(section: str) -> None:
    """Put a fleet-only run's section in bench/results.md in place of the last one."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    head, found, _ = text.partition("\n" + fleet_report.TITLE)
    RESULTS.write_text((head if found else text.rstrip("\n") + "\n") + section, encoding="utf-8")


def update_readme(text: str) -> None:
    """Keep the latest table in the README, between its bench markers."""
    readme = README.read_text(encoding="utf-8")
    if README_START not in readme or README_END not in readme:
        return  # no markers: leave the README alone
    head, _, rest = readme.partition(README_START)
    _, _, tail = rest.partition(README_END)
    body = text.split("\n", 1)[1].strip()  # without results.md's own title
    README.write_text(f"{head}{README_START}\n{body}\n{README_END}{tail}", encoding="utf-8")


@dataclass(frozen=True)
class Plan:
    n: int  # fast-portal scenarios and the no-op task
    n_doc: int  # ours at the documented rate: past 45 calls x 50 to reach the sustained phase
    n_naive_doc: int  # naive at the documented rate: ~2 confirmations/s, so few
    naive_doc_cap_s: float
    timeout_s: float
    sparse: packing.SparsePlan
    n_ingest: int
    fleet: fleet.FleetPlan

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick = args.quick
        return cls(
            n=args.n or (600 if quick else 2000),
            n_doc=args.n_doc or (3500 if quick else 4000),
            n_naive_doc=args.n_naive_doc or (80 if quick else 200),
            naive_doc_cap_s=args.naive_cap_s or (20.0 if quick else 60.0),
            timeout_s=args.timeout_s,
            sparse=packing.SparsePlan(duration_s=15.0 if quick else 60.0),
            n_ingest=5000 if quick else 20_000,
            fleet=fleet.FleetPlan.quick() if quick else fleet.FleetPlan(),
        )


# -- ours -------------------------------------------------------------------------------------


def ours(ctx: Ctx, portal: str, limits: dict[str, float], lines: list[int], n: int) -> Row:
    """The real pipeline: N x delivery.confirm, until the simulator accepted them all."""
    register(ctx, portal, limits)
    dead_before = dead_lettered(ctx)

    def send(mid: int, line: int) -> object:
        return ctx.producer.confirm(portal=portal, connector=CONNECTOR, line=line, **element(mid))

    sent = enqueue(send, lines, n, ctx.ids(n))
    wait_for(lambda: accepted(ctx, portal) >= n, sent.t0 + ctx.timeout_s, 0.05)
    stopped = time.time()
    state, records = sim_records(ctx, portal)
    dead = dead_lettered(ctx) - dead_before
    return sim_row(
        "ours (batched pipeline)",
        portal_label(limits, lines),
        sent,
        state,
        records,
        stopped_at=stopped,
        lost=dead,
        limits=limits,
        note=f"enqueue {sent.enqueue_rate:.0f}/s",
    )


def warm_ours(ctx: Ctx) -> None:
    """First tasks pay for connections and script loads: pay them outside the measurement."""
    ours(ctx, "warm", dict(FAST), [1, 2], 40)
    # the simulator accepts before the worker settles: let the settles land before the reset
    wait_for(lambda: int(ctx.r.hget(f"{PREFIX}:stats", "delivered") or 0) >= 40, time.time() + 30)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Results:
    rows: dict[str, Row]
    extra: dict[str, str]
    packed: packing.Results
    fleet: fleet.FleetResults


def run_all(ctx: Ctx, plan: Plan) -> Results:
    rows, extra = {}, {"load_before": _load()}
    workers = start_fleet(ctx, "worker", "celery,flush", ["ours1", "ours2"], beat=True)
    warm_ours(ctx)
    ctx.r.delete(Keys(PREFIX).stats)
    rows["ours_doc"] = ours(ctx, "doc-ours", DOC, [1, 2], plan.n_doc)
    rows["ours_fast"] = ours(ctx, "fast-ours", FAST, [1, 2, 3, 4], plan.n)
    extra["pipeline_stats"] = _stats(ctx)
    packed = packing.run_ours(ctx, plan.sparse, plan.n_doc, plan.n_ingest, plan.n)
    fleet_res = fleet.run(ctx, plan.fleet)
    # (the fleet's share-1 rows, when it had any, stopped them already)
    ctx.procs.stop([w for w in workers if w in ctx.procs.children])
    start_fleet(ctx, "bench.naive", "naive,noop", ["naive1", "naive2"], beat=False)
    noop(ctx, 40)  # warm-up
    rows["noop"] = noop(ctx, plan.n)
    rows["naive_fast"] = baseline(ctx, "fast-naive", FAST, [1, 2, 3, 4], plan.n, ctx.timeout_s)
    rows["naive_doc"] = baseline(
        ctx, "doc-naive", DOC, [1, 2], plan.n_naive_doc, plan.naive_doc_cap_s
    )
    packed.sparse["naive"] = packing.naive_sparse(ctx, plan.sparse)
    ctx.procs.stop(ctx.workers or [])
    rows["perm_doc"] = permitted(DOC, [1, 2], plan.n_doc, OUR_BURST)
    rows["perm_fast"] = permitted(FAST, [1, 2, 3, 4], plan.n, int(FAST["burst"]))
    extra["sim_req_s"] = probe_simulator(ctx)
    extra["load_after"] = _load()
    extra["redis_version"] = str(ctx.r.info("server").get("redis_version", "?"))
    return Results(rows, extra, packed, fleet_res)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _stats(ctx: Ctx) -> str:
    stats = {text(k): text(v) for k, v in ctx.r.hgetall(Keys(PREFIX).stats).items()}
    keep = sorted(k for k in stats if not k.startswith(("last_", "api_error")))
    errors = sorted(k for k in stats if k.startswith("api_error"))
    return ", ".join(f"{k}={stats[k]}" for k in keep + errors)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="smaller N: about a minute; printed, not saved"
    )
    ap.add_argument("--n", type=int, default=0, help="confirmations, fast portal and no-op")
    ap.add_argument("--n-doc", type=int, default=0, help="confirmations, ours at 2/s")
    ap.add_argument("--n-naive-doc", type=int, default=0, help="confirmations, naive at 2/s")
    ap.add_argument("--naive-cap-s", type=float, default=0, help="time cap, naive at 2/s")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="per-scenario time cap")
    ap.add_argument(
        "--ours-log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="celery -l of our workers (at info each task logs two lines through structlog)",
    )
    ap.add_argument("--keep-logs", action="store_true", help="keep worker and simulator logs")
    ap.add_argument(
        "--fleet-only",
        action="store_true",
        help="only the fleet table (bench/fleet.py): printed, and (unless --quick) in place of "
        "bench/results.md's fleet section",
    )
    return ap.parse_args(argv)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.from_args(args)
    signal.signal(signal.SIGTERM, _interrupted)
    with session(args.timeout_s, args.ours_log_level, args.keep_logs) as ctx:
        if args.fleet_only:
            start_fleet(ctx, "worker", "celery,flush", ["ours1", "ours2"], beat=True)
            warm_ours(ctx)
            section = "\n".join(fleet_report.render(fleet.run(ctx, plan.fleet))) + "\n"
            if not args.quick:
                replace_fleet_section(section)
            print(section)
            return 0
        res = run_all(ctx, plan)
        res.extra["ours_log_level"] = args.ours_log_level
        text = report.render(plan, res.rows, res.extra, quick=args.quick)
        text += "\n".join(packing_report.render(res.packed, res.rows)) + "\n"
        fast = res.rows["ours_fast"].rate if "ours_fast" in res.rows else None
        text += "\n".join(fleet_report.render(res.fleet, fast)) + "\n"
        if not args.quick:  # (a smoke run's smaller N are not the tables the docs quote)
            RESULTS.write_text(text, encoding="utf-8")
            update_readme(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
