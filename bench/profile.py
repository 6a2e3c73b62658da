"""Where the workers' CPU goes at the fleet shape: py-spy samples both worker process trees
(pool children included) while the fleet is offered at one rate, and the samples are summed by
what they were doing.

    .venv/bin/python -m bench.profile              # 300 portals x 4 lines, 80/s for 20 s
    .venv/bin/python -m bench.profile --rate 100 --seconds 30 --raw /tmp/stacks.txt

py-spy reads the processes from outside (ptrace: run as root or with that capability): no code
change in the worker. It samples only threads holding the GIL (`--gil`): a thread waiting for
Redis, the broker, the portal or its next task is not counted, so the shares approximate the
Python CPU the workers used (C code that releases the GIL is missed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import fleet
from bench.context import DOC, register_many, session, start_fleet
from bench.run import warm_ours

#: (label, frame text that marks it): a sample counts for the first label one of its frames
#: matches; inside a task, the task's own parts first
FLUSH = (
    ("flush: HTTP call (requests, urllib3, JSON)", "send_status_delivery ("),
    ("flush: begin script (lease, budget)", "begin (worker/store/buffer.py"),
    ("flush: settle script", "settle (worker/store/buffer.py"),
    ("flush: opening the token", "open_token ("),
    ("flush: counting the call", "count_call ("),
    ("flush: packing check", "packing_on ("),
    ("flush: sending the next trigger", "send_flush ("),
    ("flush: the rest of the task", ""),
)
INGEST = (
    ("ingest: validation", "validated ("),
    ("ingest: ingest script", "ingest (worker/store/buffer.py"),
    ("ingest: sending the flush trigger", "send_flush ("),
    ("ingest: the rest of the task", ""),
)
TICK = (
    ("tick: taking its groups (take_tick script)", "take_tick ("),
    ("tick: handing portals to its threads and waiting", ""),
)
#: a tick's portals are flushed in threads of the tick pool: their stacks start there
TASKS = (
    ("flush_portal (worker/flush/tick.py", FLUSH),
    ("flush_tick (tasks/delivery.py", TICK),
    ("flush (tasks/delivery.py", FLUSH),
    ("confirm (tasks/delivery.py", INGEST),
)
OTHERS = (
    ("flush: lease renewal thread", "worker/flush/renewal.py"),
    ("sweep task", "sweep (tasks/delivery.py"),
    ("beat", "celery/beat.py"),
    ("Celery: task events (publishing to Flower's fanout)", "celery/events/"),
    ("Celery/kombu: acks", "QoS.ack ("),
    ("Celery: task tracing (pool child)", "celery/app/trace.py"),
    ("Celery/billiard: handing tasks to the pool and back", "billiard/"),
    ("Celery/kombu: consuming, polling, restoring", "kombu/"),
)


def classify(stack: str) -> str:
    for marker, parts in TASKS:
        if marker in stack:
            return next(label for label, needle in parts if needle in stack)
    for label, needle in OTHERS:
        if needle in stack:
            return label
    return "other (interpreter, Celery's loop, unattributed)"


def summarise(raw: Path) -> list[tuple[str, int]]:
    """Samples per part from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    parts: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            parts[classify(stack)] += int(count)
    return parts.most_common()


def _spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` and its children for `seconds`, collapsed stacks into `out`."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    args = ["record", "--pid", str(pid), "--subprocesses", "--gil", "--format", "raw"]
    args += ["--rate", "100", "--duration", str(int(seconds)), "--output", str(out)]
    return subprocess.Popen([py_spy, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    ap.add_argument("--portals", type=int, default=300)
    ap.add_argument("--lines", type=int, default=4)
    ap.add_argument("--rate", type=float, default=80.0, help="confirmations/s offered")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long it is offered")
    ap.add_argument("--raw", type=Path, default=None, help="keep py-spy's collapsed stacks here")
    args = ap.parse_args(argv)
    with session(120.0, "warning", keep_logs=False) as ctx:
        workers = start_fleet(ctx, "worker", "celery,flush", ["ours1", "ours2"], beat=True)
        warm_ours(ctx)
        portals = [f"fleet-{i:04d}" for i in range(args.portals)]
        register_many(ctx, portals, DOC)
        shape = [(p, line) for line in range(1, args.lines + 1) for p in portals]
        outputs = [ctx.procs.logdir / f"pyspy-{w.name}.txt" for w in workers]
        spies = [
            _spy(w.process.pid, out, args.seconds + 5)
            for w, out in zip(workers, outputs, strict=True)
        ]
        n = int(args.rate * args.seconds)
        row = fleet.measure(ctx, "profile", shape, n, args.rate, 20.0, 60.0)
        for spy in spies:
            spy.wait(timeout=60)
        raw = "".join(out.read_text(errors="replace") for out in outputs if out.exists())
        if args.raw:
            args.raw.write_text(raw)
        merged = ctx.procs.logdir / "pyspy-all.txt"
        merged.write_text(raw)
        parts = summarise(merged)
    total = sum(count for _, count in parts) or 1
    cpu_ms = row.cpu_ms or 0.0
    print(f"{args.portals} portals x {args.lines} lines, {args.rate:g}/s for {args.seconds:g} s:")
    print(f"worker CPU {cpu_ms:.2f} ms/conf, calls/conf {row.per_conf(row.calls) or 0:.3f}, "
          f"tasks/conf {row.per_conf(row.used.tasks) or 0:.2f}, p99 {row.p99_s} s")  # fmt: skip
    print("| what the workers were doing | share of samples | ≈ ms per confirmation |")
    print("|---|---|---|")
    for label, count in parts:
        print(f"| {label} | {count / total:.0%} | {cpu_ms * count / total:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
