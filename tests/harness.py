"""Real parts for the tests: a private Redis, the portal simulator, Celery worker processes.

Time is shrunk through settings (windows, backoffs, token lifetimes); waits are on conditions
with a deadline (`wait_for`, from devtools/procs.py like the worker command line), never on
fixed sleeps.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from b24producer import Producer
from b24sim import Simulator
from devtools.procs import (
    ROOT,
    child_env,
    kill_tree,
    start_logged,
    stop_process,
    wait_for,
    worker_args,
)
from devtools.redis_sentinel import SentinelCluster, server_binary
from worker.store.keys import Keys

CLIENT_ID = "app.b24d.test"
CLIENT_SECRET = "client-secret-for-tests-7f3a"
__all__ = ["ROOT", "wait_for"]  # re-exported: the suite imports them from here

#: settings for fast tests: windows, backoffs and sweeps in tens of milliseconds
FAST_ENV = {
    "DELIVERY_FLUSH_WINDOW_S": "0.2",
    "DELIVERY_BACKOFF_BASE_S": "0.05",
    "DELIVERY_BACKOFF_CAP_S": "0.5",
    "DELIVERY_MAX_ATTEMPTS": "4",
    "DELIVERY_SWEEP_INTERVAL_S": "0.2",
    "DELIVERY_MAX_COUNTDOWN_S": "1",
    "DELIVERY_HTTP_CONNECT_TIMEOUT_S": "1",
    "DELIVERY_HTTP_READ_TIMEOUT_S": "2",
    "DELIVERY_LEASE_TTL_S": "4",
    "DELIVERY_REFRESH_LOCK_TTL_S": "3",
    "DELIVERY_OAUTH_TIMEOUT_S": "2",
    # as the tests and the demo run: loopback endpoints, the simulator's OAuth servers allowed
    "DELIVERY_ALLOWED_ENDPOINT_NETWORKS": "public,loopback",
    "BITRIX24_OAUTH_HOSTS": "127.0.0.1",
    "DELIVERY_OVERLOAD_PARK_S": "1",
    "DELIVERY_OPERATION_LIMIT_WAIT_S": "0.5",
    "DELIVERY_RATE_PER_S": "1000",
    "DELIVERY_RATE_BURST": "1000",
    "DELIVERY_LOG_FORMAT": "json",
    # the suite follows one group's flow; packing's own tests register portals with packing on
    "DELIVERY_PACKING": "off",
}


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    name: str
    #: the worker's environment: `pool_pids` asks its broker
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_pids(self) -> list[int]:
        """The worker's pool processes, as it reports them (`inspect stats`); [] when it does
        not answer. Not `child_pids`: with `-B` the embedded beat is a child too, and a beat
        killed is not forked again as a pool child is (the sweep would stop for good)."""
        node = f"{self.name}@{socket.gethostname()}"
        broker = self.env.get("CELERY_BROKER_URL") or self.env["REDIS_URL"]
        app = Producer(broker, sentinel_master=self.env.get("REDIS_SENTINEL_MASTER")).app
        try:
            replies = app.control.inspect(destination=[node], timeout=5.0, limit=1).stats()
        finally:
            app.close()
        pool = (replies or {}).get(node, {}).get("pool", {})
        return [int(pid) for pid in pool.get("processes", [])]

    def stop(self, timeout_s: float = 15.0) -> None:
        stop_process(self.process, timeout_s, self.name)

    def kill(self) -> None:
        """SIGKILL the main process and its pool children (a crash, not a shutdown)."""
        kill_tree(self.process)


@dataclass
class Fleet:
    """Celery worker processes started against one Redis and one simulator."""

    redis_url: str
    sim: Simulator
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def environment(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BITRIX24_"))}
        env = child_env(base, **FAST_ENV)
        env.update(
            REDIS_URL=self.redis_url,
            BITRIX24_CLIENT_ID=CLIENT_ID,
            BITRIX24_CLIENT_SECRET=CLIENT_SECRET,
            BITRIX24_OAUTH_URL=self.sim.oauth_url,
        )
        env.update(self.env)
        env.update(extra)
        return env

    def spawn(
        self,
        concurrency: int = 2,
        beat: bool = False,
        queues: str = "celery,flush",
        **extra_env: str,
    ) -> WorkerProcess:
        """Start `celery -A worker worker` (with the sweep on beat if asked); do not wait."""
        name = f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}"
        log_path = self.tmp / f"{name}.log"
        schedule = self.tmp / f"{name}-beat-schedule" if beat else None
        args = worker_args(
            f"{name}@%h", queues=queues, concurrency=concurrency, beat_schedule=schedule
        )
        # the pool children share the test's process group: `kill` finds them by parent pid
        env = self.environment(**extra_env)
        process = start_logged(args, log_path, env, new_session=False)
        worker = WorkerProcess(process, log_path, name, env)
        self.workers.append(worker)
        return worker

    def start(
        self,
        concurrency: int = 2,
        beat: bool = True,
        queues: str = "celery,flush",
        **extra_env: str,
    ) -> WorkerProcess:
        """`spawn`, then wait until the worker is ready."""
        worker = self.spawn(concurrency, beat, queues, **extra_env)
        name, process = worker.name, worker.process
        wait_for(
            lambda: "ready." in worker.log() or process.poll() is not None,
            30,
            what=f"{name} to start",
        )
        if process.poll() is not None:
            raise AssertionError(f"worker {name} exited:\n{worker.log()[-3000:]}")
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)


def run_python(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout_s: float = 60,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in the repository (this process's environment unless `env`), `stdin` fed
    to it, output captured as text."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=check,
    )


def run_cli(
    redis_url: str, *args: str, stdin: str = "", check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`b24-delivery ARGS` (as `python -m worker.cli`) against `redis_url`, every other setting at
    its default (no DELIVERY_ or BITRIX24_ variable of this process passed on)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BITRIX24_"))}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    return run_python("-m", "worker.cli", *args, env=env, stdin=stdin, check=check)


def sentinel_cluster(needed_for: str, **options: Any) -> Iterator[SentinelCluster]:
    """For a fixture: a started `SentinelCluster(**options)`, closed afterwards; a skip saying
    what it was `needed_for` when this machine has no redis-server binary."""
    try:
        server_binary()
    except RuntimeError as exc:
        pytest.skip(f"no redis-server binary {needed_for}: {exc}")
    setup = SentinelCluster(**options).start()
    try:
        yield setup
    finally:
        setup.close()


def confirm_until_taken(
    p: Producer,
    item: dict[str, Any],
    errors: list[str],
    stop: threading.Event | None = None,
    backoff_s: float = 0.1,
) -> str | None:
    """One confirmation through an outage of the store or broker: `item` sent again (the same id)
    until the producer returns its task id, each failure's class named in `errors` and followed by
    `backoff_s` of back-off (the load's pause, not a wait for a condition). None once `stop` is set.
    """
    while stop is None or not stop.is_set():
        try:
            return p.confirm(**item)
        except Exception as exc:  # the outage window: count, back off, retry
            errors.append(type(exc).__name__)
            time.sleep(backoff_s)
    return None


def producer(redis_url: str) -> Producer:
    return Producer(redis_url)


def confirmation(
    portal: str, message_id: int, connector: str = "myconnector", line: int = 107, **extra: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "portal": portal,
        "connector": connector,
        "line": line,
        "im": {"chat_id": 323, "message_id": message_id},
        "message": {"id": [f"ext-{message_id}"], "date": 1738065600},
        "chat": {"id": "channel-123"},
    }
    payload.update(extra)
    return payload


def stats(r: redis.Redis, prefix: str = "b24d") -> dict[str, int]:
    raw = r.hgetall(Keys(prefix).stats)
    out: dict[str, int] = {}
    for k, v in raw.items():
        try:
            out[k.decode()] = int(v)
        except ValueError:
            continue
    return out


def portal_hash(r: redis.Redis, member_id: str, prefix: str = "b24d") -> dict[str, str]:
    """A portal's stored hash as text (tokens included: tests only)."""
    return {k.decode(): v.decode() for k, v in r.hgetall(Keys(prefix).portal(member_id)).items()}


def dead_letters(r: redis.Redis, prefix: str = "b24d") -> list[dict[str, Any]]:
    return [json.loads(v) for v in r.hvals(Keys(prefix).dead_data)]


def rejected_records(r: redis.Redis, prefix: str = "b24d") -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.lrange(Keys(prefix).rejected, 0, -1)]


def delivered_ids(sim: Simulator, portal: str | None = None) -> list[int]:
    return [int(a.im["message_id"]) for a in sim.accepted(portal)]
