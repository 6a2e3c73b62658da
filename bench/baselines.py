"""The baselines of `make bench`'s main table, on bench.naive's workers: the no-op Celery task,
the naive one-call-per-confirmation worker, the portal's permitted rate (computed from its
leaky bucket), and the simulator's own ceiling on this machine."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import time

from b24sim import METHOD
from bench import naive
from bench.context import BATCH, CONNECTOR, Ctx, element, enqueue, sim_records, wait_for
from bench.measure import Row, permitted_row, sim_row


def noop(ctx: Ctx, n: int) -> Row:
    ctx.r.delete(naive.NOOP_STATS)

    def send(mid: int, line: int) -> object:
        kwargs = {"portal": "noop", "connector": CONNECTOR, "line": line, **element(mid)}
        return ctx.producer.app.send_task(
            naive.NOOP_TASK, kwargs=kwargs, queue=naive.NOOP_QUEUE, retry=False
        )

    sent = enqueue(send, [1, 2, 3, 4], n, ctx.ids(n))

    def done() -> int:
        return int(ctx.r.hget(naive.NOOP_STATS, "done") or 0)

    wait_for(lambda: done() >= n, sent.t0 + ctx.timeout_s, 0.05)
    last = float(ctx.r.hget(naive.NOOP_STATS, "last_at") or time.time())
    wall = max(last - sent.t0, 1e-9)
    return Row(
        scenario="no-op Celery task",
        portal="(none)",
        sent=n,
        delivered=done(),
        lost=None,
        wall_s=wall,
        rate=done() / wall,
        note=f"enqueue {sent.enqueue_rate:.0f}/s",
    )


def baseline(
    ctx: Ctx, portal: str, limits: dict[str, float], lines: list[int], n: int, cap_s: float
) -> Row:
    """One call per confirmation, as a Celery task each, with SDK-style 503 retries."""
    creds = ctx.sim.add_portal(portal, limits["rate_per_s"], limits["burst"])
    ctx.r.delete(naive.NAIVE_STATS)

    def send(mid: int, line: int) -> object:
        kwargs = {
            "endpoint": creds["client_endpoint"],
            "token": creds["access_token"],
            "connector": CONNECTOR,
            "line": line,
            "element": element(mid),
        }
        return ctx.producer.app.send_task(
            naive.NAIVE_TASK, kwargs=kwargs, queue=naive.NAIVE_QUEUE, retry=False
        )

    def settled() -> int:
        stats = ctx.r.hgetall(naive.NAIVE_STATS)
        return sum(int(stats.get(k, 0)) for k in (b"delivered", b"gave_up"))

    cap = cap_s
    sent = enqueue(send, lines, n, ctx.ids(n))
    complete = wait_for(lambda: settled() >= n, sent.t0 + cap, 0.05)
    stopped = time.time()
    ctx.r.delete(naive.NAIVE_QUEUE)  # whatever was not attempted by the cap stays unattempted
    state, records = sim_records(ctx, portal)
    gave_up = int(ctx.r.hget(naive.NAIVE_STATS, "gave_up") or 0)
    note = "" if complete else f"stopped at the {cap:.0f} s cap; {n - settled()} not settled"
    return sim_row(
        "naive (1 call per confirmation)",
        portal_label(limits, lines),
        sent,
        state,
        records,
        stopped_at=stopped,
        lost=gave_up,
        limits=limits,
        note=note,
    )


def permitted(limits: dict[str, float], lines: list[int], n: int, our_burst: int) -> Row:
    label = portal_label(limits, lines)
    return permitted_row(label, n, limits["rate_per_s"], int(limits["burst"]), BATCH, our_burst)


def portal_label(limits: dict[str, float], lines: list[int]) -> str:
    return f"{limits['rate_per_s']:g}/s, burst {limits['burst']:g}; {len(lines)} lines"


def probe_simulator(ctx: Ctx) -> str:
    """The simulator's own ceiling on this machine, via bench/sim_throughput.py (2 s)."""
    from bench import sim_throughput

    creds = ctx.sim.add_portal("probe", 1e9, 1e9)
    args = argparse.Namespace(threads=2, requests=20_000, seconds=2.0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        url = creds["client_endpoint"] + METHOD
        sim_throughput.run(args, url, creds["access_token"], ctx.sim.base_url)
    m = re.search(r"(\d+) req/s", out.getvalue())
    return m.group(1) if m else "?"
