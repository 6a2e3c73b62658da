"""The capacity model's counters and its table (bench/capacity.py runs the setups)."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

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
    #: the RabbitMQ node's process tree, when RabbitMQ is the broker
    broker_cpu_s: float | None = None
    #: the 1-minute load average at the start and the end of the measured part
    load: tuple[float, float] = (0.0, 0.0)

    @property
    def per_conf(self) -> float:
        return sum(self.commands.values()) / self.delivered

    @property
    def redis_ms(self) -> float:
        return 1000 * self.redis_cpu_s / self.delivered

    @property
    def ceiling(self) -> float:
        return self.delivered / self.redis_cpu_s if self.redis_cpu_s else float("inf")

    @property
    def broker_ms(self) -> str:
        if self.broker_cpu_s is None:
            return "-"
        return f"{1000 * self.broker_cpu_s / self.delivered:.3f}"


def commandstats(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


def redis_cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def tree_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their descendants."""
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


def load1() -> float:
    return os.getloadavg()[0]


def wait(done: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def render(rows: list[Row], n: int, notes: list[str]) -> str:
    out = [
        "# Capacity: what a delivered confirmation costs",
        "",
        f"Measured by `python -m bench.capacity` (`make capacity`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {psutil.cpu_count()} cores "
        f"shared with other work; {n:,} confirmations per row, {len(rows)} setups in one run, "
        "4 portals x 4 lines, 2 worker processes x `-c 2` with beat, the simulator answering "
        "at once.",
        "",
        "| setup | delivered | Redis commands / conf | Redis CPU ms / conf | one Redis core: "
        f"conf/s (at {HEADROOM:.0%}) | worker CPU s / 1,000 conf | RabbitMQ CPU ms / conf | "
        "conf/s here | load avg (start-end) | most frequent Redis commands / conf |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        top = ", ".join(f"{k} {v / r.delivered:.2f}" for k, v in r.commands.most_common(6))
        out.append(
            f"| {r.setup} | {r.delivered:,} | {r.per_conf:.1f} | {r.redis_ms:.3f} | "
            f"{r.ceiling:,.0f} ({r.ceiling * HEADROOM:,.0f}) | "
            f"{r.worker_cpu_s * 1000 / r.delivered:.2f} | {r.broker_ms} | "
            f"{r.delivered / r.wall_s:,.0f} | {r.load[0]:.1f}-{r.load[1]:.1f} | {top} |"
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
