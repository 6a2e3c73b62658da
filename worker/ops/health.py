"""Liveness checks for the worker and beat (`b24-delivery health worker|beat`).

health worker: the worker's consumer answers a remote-control `stats` request through the broker (so
    its broker connection is up and its event loop runs), and every pool process it reports
    is alive on this host (the probe runs in the worker's container).
health beat: the sweep ran within N sweep intervals: the sweep stores its last run in Redis on
    Redis' clock, so no host clock is involved. Beat schedules the sweep and a worker runs
    it from the `flush` queue: a dead beat, or no worker consuming `flush`, both fail here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import redis

from worker.settings import Settings
from worker.store.keys import Keys, text


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    line: str


def node_name(node: str | None = None) -> str:
    """The worker's node name: Celery's default is `celery@<hostname>`."""
    if node:
        return node if "@" in node else f"{node}@{socket.gethostname()}"
    return f"celery@{socket.gethostname()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def check_worker(app: Any, node: str, timeout_s: float = 5.0) -> Verdict:
    """Whether `node`'s consumer answers through the broker and its pool processes live."""
    try:
        replies = app.control.inspect(destination=[node], timeout=timeout_s).stats() or {}
    except Exception as exc:  # the broker is unreachable: the probe's answer is "unhealthy"
        return Verdict(False, f"unhealthy: broker error: {type(exc).__name__}: {exc}")
    stats = replies.get(node)
    if not stats:
        return Verdict(False, f"unhealthy: {node} did not answer within {timeout_s:g}s")
    pool = stats.get("pool") or {}
    processes = [int(p) for p in pool.get("processes") or [] if isinstance(p, int | str)]
    if "processes" in pool and not processes:
        return Verdict(False, f"unhealthy: {node} has no pool processes")
    dead = [pid for pid in processes if not _pid_alive(pid)]
    if dead and stats.get("pid") and _pid_alive(int(stats["pid"])):
        return Verdict(False, f"unhealthy: {node} pool processes gone: {dead}")
    return Verdict(True, f"ok: {node} answered, pool processes {len(processes)}")


def sweep_age_s(client: redis.Redis, keys: Keys) -> float | None:
    """Seconds since the sweep last ran, on Redis' clock; None when it never ran."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.sweep_last_run)
    pipe.time()
    last, (seconds, micros) = pipe.execute()
    if last is None:
        return None
    age: float = float(seconds) + float(micros) / 1e6 - float(text(last))
    return max(0.0, age)


def check_beat(client: redis.Redis, settings: Settings, intervals: float = 30) -> Verdict:
    limit = intervals * settings.sweep_interval_s
    try:
        age = sweep_age_s(client, Keys(settings.key_prefix))
    except redis.RedisError as exc:
        return Verdict(False, f"unhealthy: redis error: {type(exc).__name__}: {exc}")
    if age is None:
        return Verdict(False, "unhealthy: the sweep has never run")
    if age > limit:
        return Verdict(False, f"unhealthy: the sweep last ran {age:.1f}s ago (limit {limit:g}s)")
    return Verdict(True, f"ok: the sweep ran {age:.1f}s ago (limit {limit:g}s)")
