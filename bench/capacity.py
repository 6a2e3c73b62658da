"""Capacity model: what one delivered confirmation costs Redis and the workers.

    .venv/bin/python -m bench.capacity            # `make capacity`: about a minute
    .venv/bin/python -m bench.capacity --n 1500   # smaller

Loopback only, bounded in count and time. For each setup: a private redis-server (with one
replica for the WAIT row), the b24sim simulator in a subprocess with fast portals (the portal
is never the limit here), 2 worker processes x `-c 2` with beat. After a warm-up, N
confirmations are enqueued and delivered; the run measures, per delivered confirmation, Redis
commands (`INFO commandstats` deltas, producer and workers together) and Redis CPU
(`used_cpu_sys` + `used_cpu_user` deltas), and the workers' CPU per 1,000 (their process trees).
Redis runs commands on one thread, so one primary carries at most 1 / (CPU seconds per
confirmation) confirmations per second; the table also gives that at 70% of a core.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from b24producer import Producer
from bench import naive
from bench.procs import Sim, celery_worker
from devtools.procs import Procs, child_env
from devtools.redis_sentinel import SentinelCluster

CLIENT_ID = "app.capacity"
CLIENT_SECRET = "capacity-secret"
PORTALS, LINES = 4, 4
FAST = {"rate_per_s": 1000.0, "burst": 1000.0}
RESULTS = Path(__file__).resolve().parent / "capacity.md"
README = RESULTS.parent.parent / "README.md"
MARKS = ("<!-- capacity:start -->", "<!-- capacity:end -->")
HEADROOM = 0.7


@dataclass
class Row:
    setup: str
    delivered: int
    wall_s: float
    commands: Counter[str]
    redis_cpu_s: float
    worker_cpu_s: float

    @property
    def per_conf(self) -> float:
        return sum(self.commands.values()) / self.delivered

    @property
    def redis_ms(self) -> float:
        return 1000 * self.redis_cpu_s / self.delivered

    @property
    def ceiling(self) -> float:
        return self.delivered / self.redis_cpu_s if self.redis_cpu_s else float("inf")


def _commandstats(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


def _redis_cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def _tree_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _wait(done: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Setup:
    """One measured row: a fresh primary (with a replica), the simulator, two workers."""

    def __init__(self, name: str, logdir: Path) -> None:
        self.logdir = logdir / name
        self.logdir.mkdir()
        self.cluster = SentinelCluster(sentinel_count=0).start()
        self.procs = Procs(self.logdir)
        self.primary = self.cluster.nodes["primary"]
        self.client = self.primary.client(timeout_s=10)
        self.producer = Producer(self.primary.url)
        self.workers: list[int] = []

    def measure(self, setup: str, send: Any, done: Any, n: int, timeout_s: float) -> Row:
        """Warm up, reset Redis' counters, send N, wait until `done(N)`; the deltas."""
        warm = 200
        send(1, warm)
        _wait(lambda: done() >= warm, timeout_s, "the warm-up")
        self.client.config_resetstat()
        redis0, workers0 = _redis_cpu(self.client), _tree_cpu(self.workers)
        t0 = time.monotonic()
        send(warm + 1, n)
        _wait(lambda: done() >= warm + n, timeout_s, f"{n} completions")
        wall = time.monotonic() - t0
        commands = _commandstats(self.client)
        commands.pop("info", None)  # this script's own reads
        commands.pop("config|resetstat", None)
        cpu = _redis_cpu(self.client) - redis0
        return Row(setup, done() - warm, wall, commands, cpu, _tree_cpu(self.workers) - workers0)

    def close(self) -> None:
        self.producer.close()
        self.procs.stop()
        self.cluster.close()


def pipeline_row(setup: str, n: int, replica_acks: int, logdir: Path, timeout_s: float) -> Row:
    """The real pipeline: delivery.confirm -> buffer -> delivery.flush -> the simulator."""
    run = Setup(f"acks{replica_acks}", logdir)
    try:
        sim = Sim(run.procs, CLIENT_ID, CLIENT_SECRET)
        env = child_env(
            REDIS_URL=run.primary.url,
            BITRIX24_CLIENT_ID=CLIENT_ID,
            BITRIX24_CLIENT_SECRET=CLIENT_SECRET,
            BITRIX24_OAUTH_URL=sim.oauth_url,
            BITRIX24_OAUTH_HOSTS="127.0.0.1",
            DELIVERY_ALLOWED_ENDPOINT_NETWORKS="public,loopback",
            DELIVERY_REPLICA_ACKS=str(replica_acks),
            DELIVERY_LOG_FORMAT="json",
        )
        run.workers = [
            celery_worker(run.procs, "worker", f"cap{i}", "celery,flush", env, i == 0).process.pid
            for i in range(2)
        ]
        portals = [f"cap{p}" for p in range(PORTALS)]
        for portal in portals:
            run.producer.register_portal(**sim.add_portal(portal, **FAST))

        def accepted() -> int:
            state = sim.state(records=False)["portals"]
            return sum(int(state[p]["accepted"]) for p in portals)

        def send(first: int, count: int) -> None:
            for mid in range(first, first + count):
                run.producer.confirm(
                    portal=portals[mid % PORTALS],
                    connector="capconn",
                    line=1 + (mid // PORTALS) % LINES,
                    im={"chat_id": 1, "message_id": mid},
                    message={"id": [f"ext-{mid}"], "date": 1738065600},
                    chat={"id": "c"},
                )

        return run.measure(setup, send, accepted, n, timeout_s)
    finally:
        run.close()


def noop_row(n: int, logdir: Path, timeout_s: float) -> Row:
    """Celery's own cost per message on Redis: bench.naive's no-op task, same Celery options."""
    run = Setup("noop", logdir)
    try:
        env = child_env(REDIS_URL=run.primary.url)
        run.workers = [
            celery_worker(
                run.procs, "bench.naive", f"noop{i}", naive.NOOP_QUEUE, env, False
            ).process.pid
            for i in range(2)
        ]

        def send(first: int, count: int) -> None:
            for _ in range(count):
                run.producer.app.send_task(naive.NOOP_TASK, queue=naive.NOOP_QUEUE)

        def done() -> int:
            return int(run.client.hget(naive.NOOP_STATS, "done") or 0)

        name = "Celery no-op task (one message, Redis broker)"
        return run.measure(name, send, done, n, timeout_s)
    finally:
        run.close()


def render(rows: list[Row], n: int, notes: list[str]) -> str:
    out = [
        "# Capacity: what a delivered confirmation costs",
        "",
        f"Measured by `python -m bench.capacity` (`make capacity`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {psutil.cpu_count()} cores "
        f"shared with other work; {n:,} confirmations per row, {PORTALS} portals x {LINES} lines, "
        "2 worker processes x `-c 2` with beat, the simulator answering at once.",
        "",
        "| setup | delivered | Redis commands / conf | Redis CPU ms / conf | one Redis core: "
        f"conf/s (at {HEADROOM:.0%}) | worker CPU s / 1,000 conf | conf/s here | "
        "most frequent commands / conf |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        top = ", ".join(f"{k} {v / r.delivered:.2f}" for k, v in r.commands.most_common(6))
        out.append(
            f"| {r.setup} | {r.delivered:,} | {r.per_conf:.1f} | {r.redis_ms:.3f} | "
            f"{r.ceiling:,.0f} ({r.ceiling * HEADROOM:,.0f}) | "
            f"{r.worker_cpu_s * 1000 / r.delivered:.2f} | {r.delivered / r.wall_s:,.0f} | {top} |"
        )
    out += ["", *notes, ""]
    return "\n".join(out)


def update_readme(table: str) -> None:
    readme = README.read_text(encoding="utf-8")
    start, end = MARKS
    if start not in readme or end not in readme:
        return
    head, _, rest = readme.partition(start)
    _, _, tail = rest.partition(end)
    body = table.split("\n", 2)[2].strip()  # without the title
    README.write_text(f"{head}{start}\n{body}\n{end}{tail}", encoding="utf-8")


def _rabbitmq_note() -> str:
    from dataclasses import fields

    from worker.settings import Settings

    if "broker_url" not in {f.name for f in fields(Settings)}:
        return (
            "- RabbitMQ as the broker: not measured; this build has no CELERY_BROKER_URL "
            "setting yet (the broker runs on the state Redis)."
        )
    return "- RabbitMQ as the broker: not measured by this script yet."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    ap.add_argument("--n", type=int, default=3000, help="confirmations per row (max 20000)")
    ap.add_argument("--timeout-s", type=float, default=180.0, help="per-row time cap")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args(argv)
    n = max(100, min(args.n, 20_000))
    logdir = Path(tempfile.mkdtemp(prefix="b24d-capacity-"))
    ok = False
    try:
        rows = [
            pipeline_row("Redis broker", n, 0, logdir, args.timeout_s),
            pipeline_row("Redis broker, DELIVERY_REPLICA_ACKS=1", n, 1, logdir, args.timeout_s),
            noop_row(n, logdir, args.timeout_s),
        ]
        notes = [
            "- Commands (inside scripts included) and CPU include the producer's (LPUSH), "
            "Celery's (BRPOP, the unacked bookkeeping, task events) and the pipeline's scripts "
            "(EVALSHA), and the sweep's constant load; replication to the replica is part of the "
            "primary's CPU. A confirmation is one `delivery.confirm` message plus its share of "
            "one `delivery.flush` per call (50 per call at most); the no-op row is the Celery "
            "part of each message, the rest is the pipeline's.",
            "- *conf/s here* is what this machine reached with the producer in the benchmark's "
            "own process: a floor, not the ceiling.",
            _rabbitmq_note(),
        ]
        text = render(rows, n, notes)
        RESULTS.write_text(text, encoding="utf-8")
        update_readme(text)
        print(text)
        ok = True
    finally:
        if ok and not args.keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            print(f"logs kept in {logdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
