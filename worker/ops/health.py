"""Liveness checks for the worker and beat (`b24-delivery health worker|beat`).

health worker: this host's workers answer a remote-control `stats` request through the broker (so
    their broker connection is up and their event loop runs), and every pool process they
    report is alive on this host (the probe runs in the worker's container). Worker node names
    are unique per process (worker/transport/nodes.py): the probe asks every node whose name
    ends in `@<this host>`, or those of one name with `--node`. Its replies are consumed
    without acknowledgement and leave nothing in the broker.
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
from worker.transport.nodes import host_pattern

#: the first wait for replies; a worker this slow to answer gets the rest of the timeout
FIRST_WAIT_S = 1.0


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    line: str


def nodes_of(node: str | None = None) -> tuple[str, str]:
    """What the probe asks for, shown and as a pattern: every worker on this host (None), or
    one name (`celery`, `w1`, `w1@host`: the name as given, or as made unique at start)."""
    if not node:
        host = socket.gethostname()
        return f"workers on {host}", host_pattern(host)
    name, _, host = node.partition("@")
    host = host or socket.gethostname()
    return f"{name}@{host}", host_pattern(host, name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _stats(app: Any, pattern: str, timeout_s: float) -> dict[str, Any]:
    """`stats` replies of the nodes matching `pattern`: a first short wait, then (when nobody
    answered) the rest of the timeout. A broadcast to a pattern waits for replies until none
    comes for a whole wait, so the short one keeps a healthy probe quick."""
    first = min(FIRST_WAIT_S, timeout_s)
    for wait in (first, timeout_s - first):
        if wait <= 0:
            break
        inspect = app.control.inspect(timeout=wait, pattern=pattern, matcher="pcre")
        replies: dict[str, Any] = inspect.stats() or {}
        if replies:
            return replies
    return {}


def check_worker(app: Any, node: str | None = None, timeout_s: float = 5.0) -> Verdict:
    """Whether this host's workers (or the node `node`) answer through the broker and their
    pool processes live."""
    shown, pattern = nodes_of(node)
    try:
        replies = _stats(app, pattern, timeout_s)
    except Exception as exc:  # the broker is unreachable: the probe's answer is "unhealthy"
        return Verdict(False, f"unhealthy: broker error: {type(exc).__name__}: {exc}")
    if not replies:
        return Verdict(False, f"unhealthy: no answer from {shown} within {timeout_s:g}s")
    answered = []
    for name, stats in sorted(replies.items()):
        pool = (stats or {}).get("pool") or {}
        processes = [int(p) for p in pool.get("processes") or [] if isinstance(p, int | str)]
        if "processes" in pool and not processes:
            return Verdict(False, f"unhealthy: {name} has no pool processes")
        dead = [pid for pid in processes if not _pid_alive(pid)]
        if dead and stats.get("pid") and _pid_alive(int(stats["pid"])):
            return Verdict(False, f"unhealthy: {name} pool processes gone: {dead}")
        answered.append(f"{name} (pool processes {len(processes)})")
    return Verdict(True, f"ok: {len(answered)} answered: {', '.join(answered)}")


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
