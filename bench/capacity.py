"""Capacity model: what one delivered confirmation costs Redis, the broker and the workers.

    .venv/bin/python -m bench.capacity            # `make capacity`: two to three minutes
    .venv/bin/python -m bench.capacity --n 1500   # smaller

Loopback only, bounded in count and time. For each setup: a private redis-server (with one
replica for the WAIT row), the b24sim simulator in a subprocess with fast portals (the portal
is never the limit here), 2 worker processes x `-c 2` with beat. After a warm-up, N
confirmations are enqueued and delivered; the run measures, per delivered confirmation, Redis
commands (`INFO commandstats` deltas, producer and workers together) and Redis CPU
(`used_cpu_sys` + `used_cpu_user` deltas), and the workers' CPU per 1,000 (their process trees).
The RabbitMQ row runs the same workload with CELERY_BROKER_URL on a private RabbitMQ node
(devtools/rabbitmq_local.py; the producer sends through it too), so Redis counts only the state
store's share; the node's CPU is its OS process tree's. Without `rabbitmq-server` that row is
skipped with a printed reason. Redis runs commands on one thread, so one primary carries at
most 1 / (CPU seconds per confirmation) confirmations per second; the table also gives that at
70% of a core, and the load average around each row (the machine is shared).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from b24producer import Producer
from bench import naive
from bench.capacity_report import (
    RESULTS,
    Row,
    commandstats,
    load1,
    redis_cpu,
    render,
    tree_cpu,
    update_readme,
    wait,
)
from bench.procs import Sim, celery_worker
from devtools import rabbitmq_local
from devtools.procs import Procs, child_env
from devtools.redis_sentinel import SentinelCluster

CLIENT_ID = "app.capacity"
CLIENT_SECRET = "capacity-secret"
PORTALS, LINES = 4, 4
FAST = {"rate_per_s": 1000.0, "burst": 1000.0}


class Setup:
    """One measured row: a fresh primary (with a replica), the simulator, two workers, and
    a private RabbitMQ node as the broker when `rabbitmq` is set."""

    def __init__(self, name: str, logdir: Path, rabbitmq: bool = False) -> None:
        self.logdir = logdir / name
        self.logdir.mkdir()
        self.cluster = SentinelCluster(sentinel_count=0).start()
        self.rabbit: rabbitmq_local.LocalRabbitMQ | None = None
        try:
            if rabbitmq:
                self.rabbit = rabbitmq_local.LocalRabbitMQ().start()
        except BaseException:
            self.cluster.close()
            raise
        self.procs = Procs(self.logdir)
        self.primary = self.cluster.nodes["primary"]
        self.client = self.primary.client(timeout_s=10)
        self.broker_url = self.rabbit.url if self.rabbit else self.primary.url
        self.producer = Producer(self.broker_url)
        self.workers: list[int] = []

    def _broker_cpu(self) -> float | None:
        if self.rabbit is None or self.rabbit.process is None:
            return None
        return tree_cpu([self.rabbit.process.pid])

    def measure(self, setup: str, send: Any, done: Any, n: int, timeout_s: float) -> Row:
        """Warm up, reset Redis' counters, send N, wait until `done(N)`; the deltas."""
        warm = 200
        send(1, warm)
        wait(lambda: done() >= warm, timeout_s, "the warm-up")
        self.client.config_resetstat()
        load0 = load1()
        redis0, workers0 = redis_cpu(self.client), tree_cpu(self.workers)
        broker0 = self._broker_cpu()
        t0 = time.monotonic()
        send(warm + 1, n)
        wait(lambda: done() >= warm + n, timeout_s, f"{n} completions")
        wall = time.monotonic() - t0
        commands = commandstats(self.client)
        commands.pop("info", None)  # this script's own reads
        commands.pop("config|resetstat", None)
        cpu = redis_cpu(self.client) - redis0
        broker1 = self._broker_cpu()
        return Row(
            setup,
            done() - warm,
            wall,
            commands,
            cpu,
            tree_cpu(self.workers) - workers0,
            None if broker0 is None or broker1 is None else broker1 - broker0,
            (load0, load1()),
        )

    def close(self) -> None:
        self.producer.close()
        self.procs.stop()
        if self.rabbit:
            self.rabbit.close()
        self.cluster.close()


def pipeline_row(
    setup: str, n: int, replica_acks: int, logdir: Path, timeout_s: float, rabbitmq: bool = False
) -> Row:
    """The real pipeline: delivery.confirm -> buffer -> delivery.flush -> the simulator."""
    run = Setup(f"{'amqp' if rabbitmq else 'redis'}-acks{replica_acks}", logdir, rabbitmq)
    try:
        sim = Sim(run.procs, CLIENT_ID, CLIENT_SECRET)
        broker = {"CELERY_BROKER_URL": run.broker_url} if rabbitmq else {}
        env = child_env(
            None,
            REDIS_URL=run.primary.url,
            BITRIX24_CLIENT_ID=CLIENT_ID,
            BITRIX24_CLIENT_SECRET=CLIENT_SECRET,
            BITRIX24_OAUTH_URL=sim.oauth_url,
            BITRIX24_OAUTH_HOSTS="127.0.0.1",
            DELIVERY_ALLOWED_ENDPOINT_NETWORKS="public,loopback",
            DELIVERY_REPLICA_ACKS=str(replica_acks),
            DELIVERY_LOG_FORMAT="json",
            **broker,
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
        ]
        if rabbitmq_local.server_binary() is None:
            rabbit_note = (
                "- RabbitMQ as the broker: skipped, no `rabbitmq-server` (with `erl`) on this "
                f"machine (looked in {', '.join(rabbitmq_local.CANDIDATES)})."
            )
            print(rabbit_note.removeprefix("- "), file=sys.stderr)
        else:
            name = "RabbitMQ broker (Redis: state only)"
            rows.append(pipeline_row(name, n, 0, logdir, args.timeout_s, rabbitmq=True))
            rabbit_note = (
                "- RabbitMQ row: a private single node (classic durable `celery` queue, quorum "
                "`flush` queue, publisher confirms, persistent messages); the producer and the "
                "workers use it, Redis holds only the state. Its CPU is the node's OS process "
                "tree (the Erlang VM and its helpers), with 2 schedulers and busy-waiting off."
            )
        rows.append(noop_row(n, logdir, args.timeout_s))
        notes = [
            "- Commands (inside scripts included) and CPU include the producer's (LPUSH), "
            "Celery's (the fetch: our workers' reliable-fetch script, kombu's BRPOP in the no-op "
            "row; the unacked bookkeeping; task events) and the pipeline's scripts "
            "(EVALSHA), and the sweep's constant load; replication to the replica is part of the "
            "primary's CPU. A confirmation is one `delivery.confirm` message plus its share of "
            "one `delivery.flush` per call (50 per call at most); the no-op row is the Celery "
            "part of each message, the rest is the pipeline's.",
            rabbit_note,
            "- *conf/s here* is what this machine reached with the producer in the benchmark's "
            "own process: a floor, not the ceiling. *load avg*: the 1-minute load average at "
            "the start and the end of the measured part (2 cores shared with other work).",
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
