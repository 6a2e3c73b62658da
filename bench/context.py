"""What every scenario of `make bench` shares: the run's processes and clients (`Ctx`), the
pipeline's settings as the bench runs them, and the small steps each scenario repeats (send,
wait, read the simulator's records, start a fleet of workers, register a portal).

The scenario modules (bench/run.py, bench/packing.py, bench/fleet.py) import this one; it
imports none of them.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from b24producer import Producer
from bench.measure import Sent
from bench.procs import Sim, celery_worker
from devtools.procs import Child, Procs, WaitTimeout, child_env
from devtools.procs import wait_for as procs_wait_for
from devtools.redis_local import LocalRedis
from worker.store.keys import Keys

CLIENT_ID = "app.bench"
CLIENT_SECRET = "bench-secret"
PREFIX = "b24d"
CONNECTOR = "benchconn"
BATCH = 50
WINDOW_S = 1.0  # DELIVERY_FLUSH_WINDOW_S as the bench runs it (the default)
OUR_BURST = 45  # the pipeline's default: 5 calls of the portal's 50 left for other callers
DOC = {"rate_per_s": 2.0, "burst": 50}  # the documented portal (limits.md)
FAST = {"rate_per_s": 1000.0, "burst": 1000}
OURS_ENV = {  # the documented defaults, spelled out so the table and the workers agree
    "DELIVERY_KEY_PREFIX": PREFIX,
    "DELIVERY_BATCH_SIZE": str(BATCH),
    "DELIVERY_FLUSH_WINDOW_S": str(WINDOW_S),
    "DELIVERY_RATE_PER_S": "2.0",
    "DELIVERY_RATE_BURST": str(OUR_BURST),
    "DELIVERY_PORTAL_MAX_INFLIGHT": "2",
    "DELIVERY_SWEEP_INTERVAL_S": "1.0",
    "DELIVERY_LOG_FORMAT": "json",
    "DELIVERY_ALLOWED_ENDPOINT_NETWORKS": "public,loopback",  # the simulator is on 127.0.0.1
}


@dataclass
class Ctx:
    """The run: its processes, the simulator, the producer, a Redis client, the workers' env."""

    procs: Procs
    sim: Sim
    producer: Producer
    r: redis.Redis
    env: dict[str, str]
    timeout_s: float  # per-scenario time cap
    next_id: int = 1
    #: the running worker fleet (its main processes), for CPU and task counts
    workers: list[Child] | None = None

    def ids(self, n: int) -> int:
        """The first of `n` fresh message ids."""
        base, self.next_id = self.next_id, self.next_id + n
        return base


@contextlib.contextmanager
def session(timeout_s: float, log_level: str, keep_logs: bool) -> Iterator[Ctx]:
    """A private redis-server, the simulator, a producer: the run's context; every process
    stopped at the end, the logs removed unless `keep_logs` or the block raised."""
    logdir = Path(tempfile.mkdtemp(prefix="b24d-bench-"))
    procs, server, ok = Procs(logdir), None, False
    try:
        server = LocalRedis().start()
        sim = Sim(procs, CLIENT_ID, CLIENT_SECRET)
        env = child_env(
            None,
            REDIS_URL=server.url,
            BITRIX24_CLIENT_ID=CLIENT_ID,
            BITRIX24_CLIENT_SECRET=CLIENT_SECRET,
            BITRIX24_OAUTH_URL=sim.oauth_url,
            BENCH_OURS_LOG_LEVEL=log_level,
            **OURS_ENV,
        )
        client = redis.Redis.from_url(server.url)
        yield Ctx(procs, sim, Producer(server.url), client, env, timeout_s)
        ok = True
    finally:
        procs.stop()
        if server is not None:
            server.close()
        if ok and not keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            print(f"logs kept in {logdir}", file=sys.stderr)


def element(mid: int) -> dict[str, Any]:
    return {
        "im": {"chat_id": 1, "message_id": mid},
        "message": {"id": [f"ext-{mid}"], "date": 1738065600},
        "chat": {"id": "c"},
    }


def enqueue(send: Callable[[int, int], object], lines: list[int], n: int, base: int) -> Sent:
    """Send n confirmations as fast as the producer goes, line after line."""
    sent = Sent(t0=time.time())
    for i in range(n):
        mid = base + i
        sent.enqueued[mid] = time.time()
        send(mid, lines[i % len(lines)])
    sent.t_end = time.time()
    return sent


def wait_for(done: Callable[[], bool], deadline: float, poll_s: float = 0.1) -> bool:
    """True once `done()` holds, False when the wall-clock `deadline` passed first."""
    try:
        return bool(procs_wait_for(done, max(0.0, deadline - time.time()), interval_s=poll_s))
    except WaitTimeout:
        return False


def accepted(ctx: Ctx, portal: str) -> int:
    return int(ctx.sim.state(records=False)["portals"][portal]["accepted"])


def sim_records(ctx: Ctx, portal: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state = ctx.sim.state(records=True)
    return state["portals"][portal], [r for r in state["accepted"] if r["member_id"] == portal]


def dead_lettered(ctx: Ctx) -> int:
    return int(ctx.r.hget(Keys(PREFIX).stats, "dead_lettered") or 0)


def start_fleet(ctx: Ctx, app: str, queues: str, names: list[str], beat: bool) -> list[Child]:
    """Start these Celery workers (the first with the beat when `beat`); return once each
    answers a ping."""
    fleet = [
        celery_worker(ctx.procs, app, name, queues, ctx.env, beat and i == 0)
        for i, name in enumerate(names)
    ]
    want = {f"{name}@bench" for name in names}
    deadline = time.time() + 60
    while True:
        if any(not child.alive() for child in fleet) or time.time() > deadline:
            raise RuntimeError(f"{app} workers did not start; see {ctx.procs.logdir}")
        replies = ctx.producer.app.control.ping(destination=sorted(want), timeout=1.0) or []
        if want <= {name for reply in replies for name in reply}:
            ctx.workers = fleet
            return fleet


def register(ctx: Ctx, portal: str, limits: dict[str, float], **extra: Any) -> dict[str, Any]:
    """A simulated portal with these limits, registered with the pipeline (its own budget
    unless it is the documented portal); returns its credentials."""
    return register_many(ctx, [portal], limits, **extra)[portal]


def register_many(
    ctx: Ctx, portals: list[str], limits: dict[str, float], **extra: Any
) -> dict[str, dict[str, Any]]:
    """Register these portals, then wait until the pipeline has every one; their credentials."""
    creds: dict[str, dict[str, Any]] = {}
    if limits is not DOC:
        extra |= {"rate_per_s": limits["rate_per_s"], "rate_burst": int(limits["burst"])}
    for portal in portals:
        creds[portal] = ctx.sim.add_portal(portal, limits["rate_per_s"], limits["burst"])
        ctx.producer.register_portal(**creds[portal], **extra)
    key = Keys(PREFIX).portals

    def all_in() -> bool:
        return bool(all(ctx.r.smismember(key, portals)))

    if not wait_for(all_in, time.time() + 30 + len(portals) / 10):
        raise RuntimeError(f"portals {portals[:3]}... not registered; see {ctx.procs.logdir}")
    return creds
