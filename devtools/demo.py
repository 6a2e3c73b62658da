"""`make run`: the whole system on one machine, with a demo load and live progress.

Starts (each child in its own process group, output in a temp folder's log files):

- Redis: `REDIS_URL` when a server answers there; with no `REDIS_URL` set, DB 15 of the default
  server (redis://127.0.0.1:6379/15) when it answers; else a private server from the `embedded`
  wheels. Demo state lives under its own key prefix (`DELIVERY_KEY_PREFIX=b24d-demo`).
- the Bitrix24 portal simulator (`python -m b24sim`) with three portals,
- two Celery workers (`-Q celery,flush`), one beat, Flower (basic auth `FLOWER_BASIC_AUTH`),

then registers the portals, enqueues confirmations (with a few duplicates and invalid ones),
prints a progress line every second until every deliverable confirmation is delivered, and keeps
running (a trickle of live traffic shows token refreshes) until Ctrl-C, SIGTERM or `--duration`.

    .venv/bin/python -m devtools.demo [--duration S] [--confirmations N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from b24producer import Producer
from devtools.demo_load import (
    PORTALS,
    TOKEN_TTL_S,
    TRICKLE_EVERY_S,
    Load,
    announce,
    enqueue_load,
    snapshot,
    trickle,
)
from devtools.procs import (
    ROOT,
    ChildExited,
    Procs,
    Stopped,
    WaitTimeout,
    beat_args,
    simulator_args,
    simulator_state,
    wait_for,
    worker_args,
)
from devtools.redis_local import LocalRedis, answers, free_port
from worker.store.keys import Keys

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEMO_DB_URL = "redis://127.0.0.1:6379/15"
KEY_PREFIX = "b24d-demo"
CLIENT_ID = "app.b24d.demo"
CLIENT_SECRET = "demo-client-secret"  # noqa: S105 - the simulator's made-up credentials
STOP_DEADLINE_S = 20.0


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_private_redis() -> LocalRedis:
    """A LocalRedis in its own session, so a terminal's Ctrl-C does not stop it before the
    workers (it is stopped last, after everything that uses it)."""
    return LocalRedis(own_session=True).start()


def choose_redis() -> tuple[str, LocalRedis | None, str]:
    """(url, private server or None, how it was chosen)."""
    given = os.environ.get("REDIS_URL", "").strip()
    if given:
        if answers(given):
            return given, None, "REDIS_URL answers"
        server = start_private_redis()
        return server.url, server, f"REDIS_URL={given} does not answer: private redis-server"
    if answers(DEFAULT_URL):
        return DEMO_DB_URL, None, f"{DEFAULT_URL} answers: using its DB 15"
    server = start_private_redis()
    return server.url, server, f"nothing answers at {DEFAULT_URL}: private redis-server"


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Demo:
    args: argparse.Namespace
    stop: threading.Event
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="b24d-demo-")))
    redis_url: str = ""
    server: LocalRedis | None = None
    procs: Procs | None = None
    sim_url: str = ""
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self) -> bool:
        duration: float | None = self.args.duration
        return duration is not None and self.elapsed() >= duration

    def start_redis(self) -> None:
        self.redis_url, self.server, how = choose_redis()
        print(f"redis: {how}", flush=True)
        print(f"REDIS_URL={self.redis_url}", flush=True)
        client = redis.Redis.from_url(self.redis_url)
        with contextlib.closing(client):
            stale = list(client.scan_iter(match=f"{KEY_PREFIX}:*", count=1000))
            if stale:
                client.delete(*stale)  # only the demo's own keys, from an earlier run

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BITRIX24_")}
        env.update(
            REDIS_URL=self.redis_url,
            DELIVERY_KEY_PREFIX=KEY_PREFIX,
            # the simulator's portals live on 127.0.0.1 (production allows public only)
            DELIVERY_ALLOWED_ENDPOINT_NETWORKS="public,loopback",
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start_simulator(self, procs: Procs) -> dict[str, dict[str, Any]]:
        state_file = self.tmp / "sim-state.json"
        extra = ["--rate", "2", "--burst", "50", "--token-ttl", str(TOKEN_TTL_S)]
        for portal in PORTALS:
            extra += ["--portal", portal]
        procs.spawn("simulator", simulator_args(state_file, CLIENT_ID, CLIENT_SECRET, *extra))
        info = simulator_state(state_file, stop=self.stop, check=procs.check, interval_s=0.1)
        self.sim_url = info["base_url"].rstrip("/")
        procs.env.update(
            BITRIX24_CLIENT_ID=CLIENT_ID,
            BITRIX24_CLIENT_SECRET=CLIENT_SECRET,
            BITRIX24_OAUTH_URL=info["oauth_url"],
        )
        print(f"simulator: {self.sim_url} (oauth {info['oauth_url']})", flush=True)
        portals: dict[str, dict[str, Any]] = info["portals"]
        return portals

    def start_celery(self, procs: Procs) -> tuple[str, int]:
        for n in (1, 2):
            procs.spawn(f"worker{n}", worker_args(f"demo{n}@%h", loglevel="INFO"))
        procs.spawn("beat", beat_args(self.tmp / "beat-schedule", "INFO"))
        auth = os.environ.get("FLOWER_BASIC_AUTH") or "admin:admin"
        port: int = self.args.flower_port
        if port == 0 or port_open(port):
            port = free_port()
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        # Flower reads its basic auth from its environment: not on a command line (ps)
        procs.spawn(
            "flower",
            [*celery, "flower", "--address=127.0.0.1", f"--port={port}"],
            env={**procs.env, "FLOWER_BASIC_AUTH": auth},
        )
        return auth, port

    def start(self) -> dict[str, dict[str, Any]]:
        print(f"logs: {self.tmp}", flush=True)
        self.start_redis()
        procs = self.procs = Procs(self.tmp, self.base_env())
        portals = self.start_simulator(procs)
        if self.stop.is_set():
            return {}
        auth, port = self.start_celery(procs)
        wait_for(
            lambda: port_open(port), 30, "Flower", stop=self.stop, check=procs.check, interval_s=0.1
        )
        print(f"flower: http://127.0.0.1:{port}/  (basic auth {auth})", flush=True)
        print(
            f"ping the workers: cd {ROOT} && REDIS_URL={self.redis_url} "
            ".venv/bin/celery -A worker inspect ping",
            flush=True,
        )
        return portals

    def register(self, producer: Producer, portals: dict[str, dict[str, Any]]) -> None:
        for kwargs in portals.values():
            producer.register_portal(**kwargs)
        client = redis.Redis.from_url(self.redis_url)
        assert self.procs is not None
        with contextlib.closing(client):
            wait_for(
                lambda: client.scard(Keys(KEY_PREFIX).portals) >= len(portals),
                60,
                "the workers to register the portals",
                stop=self.stop,
                check=self.procs.check,
                interval_s=0.1,
            )
        if not self.stop.is_set():
            print(f"workers up; registered portals {', '.join(portals)}", flush=True)

    def watch(self, producer: Producer, load: Load) -> bool:
        """Progress every second until stopped; True once everything deliverable arrived."""
        client = redis.Redis.from_url(self.redis_url)
        all_delivered = False
        next_trickle = 0.0
        assert self.procs is not None
        with contextlib.closing(client):
            while not self.stop.is_set() and not self.out_of_time():
                self.procs.check()
                snap = snapshot(client, Keys(KEY_PREFIX), self.sim_url)
                print(snap.line(self.elapsed()), flush=True)
                if not all_delivered and snap.done(load):
                    all_delivered = True
                    announce(snap, load)
                    next_trickle = time.monotonic() + TRICKLE_EVERY_S
                if all_delivered and time.monotonic() >= next_trickle:
                    trickle(producer, load)
                    next_trickle = time.monotonic() + TRICKLE_EVERY_S
                self.stop.wait(1.0)
            print(snapshot(client, Keys(KEY_PREFIX), self.sim_url).line(self.elapsed()), flush=True)
        return all_delivered

    def run(self) -> int:
        portals = self.start()
        if self.stop.is_set():
            return 0
        # the workers inherit CELERY_BROKER_URL when the operator set one
        producer = Producer(os.environ.get("CELERY_BROKER_URL") or self.redis_url)
        try:
            self.register(producer, portals)
            if self.stop.is_set():
                return 0
            load = Load()
            enqueue_load(producer, load, self.args.confirmations)
            print(
                f"enqueued {load.valid} valid confirmations ({load.unique} unique, "
                f"{load.valid - load.unique} duplicates) and {load.invalid} invalid ones",
                flush=True,
            )
            all_delivered = self.watch(producer, load)
        finally:
            producer.close()
        if self.stop.is_set() or all_delivered:
            return 0
        print("DEMO_INCOMPLETE: --duration ran out before everything was delivered", flush=True)
        return 1

    def close(self) -> None:
        print("stopping...", flush=True)
        if self.procs is not None:
            self.procs.stop(deadline_s=STOP_DEADLINE_S)
        if self.server is not None:
            self.server.close()  # last: everything above used it
        print(f"stopped; logs are in {self.tmp}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m devtools.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env_duration = os.environ.get("DEMO_DURATION") or None
    ap.add_argument(
        "--duration",
        type=float,
        default=env_duration,
        help="stop cleanly after this many seconds (env DEMO_DURATION)",
    )
    ap.add_argument(
        "--confirmations",
        type=int,
        default=1200,
        help="unique valid confirmations in the demo load (default 1200)",
    )
    ap.add_argument(
        "--flower-port", type=int, default=5555, help="Flower's port (0 or taken: a free one)"
    )
    args = ap.parse_args(argv)
    if args.confirmations < 1:
        ap.error("--confirmations must be >= 1")
    return args


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    with stop_on_signals(stop):
        demo = Demo(args, stop)
        try:
            return demo.run()
        except Stopped:
            return 0
        except (WaitTimeout, ChildExited, redis.RedisError, OSError) as exc:
            print(f"demo failed: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            demo.close()


if __name__ == "__main__":
    sys.exit(main())
