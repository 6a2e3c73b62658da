"""Helpers for the reliability scenarios: scale, workers started without waiting, buffer depth."""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil
import redis

from tests.harness import Fleet, WorkerProcess, wait_for
from worker.settings import ENV_NAMES, Settings

#: `make chaos` sets CHAOS_SCALE=5: every scenario multiplies its sizes (and deadlines) by it
SCALE = max(1, int(os.environ.get("CHAOS_SCALE", "1") or "1"))

#: the settings every recovery bound depends on, at their defaults (FAST_ENV shrinks them)
DEFAULT_RECOVERY = {
    ENV_NAMES[name]: str(getattr(Settings(), name))
    for name in (
        "lease_ttl_s",
        "sweep_interval_s",
        "max_countdown_s",
        "visibility_timeout_s",
        "consumer_ttl_s",
        "http_connect_timeout_s",
        "http_read_timeout_s",
        "refresh_lock_ttl_s",
    )
}


def spawn(
    fleet: Fleet,
    concurrency: int = 2,
    beat: bool = False,
    queues: str = "celery,flush",
    **extra_env: str,
) -> WorkerProcess:
    """Start a worker process like `Fleet.start`, but do not wait for it to be ready."""
    return fleet.spawn(concurrency, beat, queues, **extra_env)


def wait_ready(workers: Iterable[WorkerProcess], timeout_s: float = 60.0) -> None:
    for worker in workers:
        wait_for(
            lambda w=worker: "ready." in w.log() or w.process.poll() is not None,  # type: ignore[misc]
            timeout_s,
            what=f"{worker.name} to start",
        )
        if worker.process.poll() is not None:
            raise AssertionError(f"worker {worker.name} exited:\n{worker.log()[-3000:]}")


def pending_items(r: redis.Redis, prefix: str = "b24d") -> int:
    """Confirmations still in the buffer (pending or leased), over every group."""
    return sum(int(r.hlen(key)) for key in r.scan_iter(match=f"{prefix}:*:g:*:items", count=500))


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1e6


def alive(worker: WorkerProcess) -> bool:
    return worker.process.poll() is None


def describe(r: redis.Redis, prefix: str = "b24d") -> str:
    """A one-line picture of the queues and the buffer, for failure messages."""
    try:
        groups = {
            key.decode(): int(r.hlen(key))
            for key in r.scan_iter(match=f"{prefix}:*:g:*:items", count=500)
            if r.hlen(key)
        }
        return (
            f"celery={r.llen('celery')} flush={r.llen('flush')} unacked={r.hlen('unacked')} "
            f"due={r.zcard(f'{prefix}:due')} pending={groups} "
            f"stats={ {k.decode(): v.decode() for k, v in r.hgetall(f'{prefix}:stats').items()} }"
        )
    except redis.RedisError as exc:
        return f"redis error: {exc}"
