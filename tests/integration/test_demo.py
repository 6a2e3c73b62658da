"""`make run`'s demo, end to end: own Redis, simulator, workers, beat, Flower, a clean stop."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import IO

import psutil

from devtools.procs import ROOT
from tests.harness import run_python

DURATION_S = 25


def _pump(stream: IO[str], lines: queue.Queue[str], seen: list[str]) -> None:
    for line in stream:
        seen.append(line)
        lines.put(line)


def _wait_line(
    lines: queue.Queue[str], pattern: str, deadline: float, seen: list[str]
) -> re.Match[str]:
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no line matching {pattern!r} in time:\n{''.join(seen)[-3000:]}"
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        match = re.search(pattern, line)
        if match:
            return match


def _ping(redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BITRIX24_"))}
    env["REDIS_URL"] = redis_url
    return run_python(
        "-m", "celery", "-A", "worker", "inspect", "ping", "--timeout", "3", env=env, timeout_s=30
    )


def test_demo_delivers_everything_answers_ping_and_stops_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BITRIX24_"))}
    env.update(REDIS_URL="redis://127.0.0.1:1/0", PYTHONUNBUFFERED="1")  # nothing answers there
    env.pop("DEMO_DURATION", None)
    args = [sys.executable, "-m", "devtools.demo", "--duration", str(DURATION_S)]
    args += ["--confirmations", "200", "--flower-port", "0"]
    demo = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert demo.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=_pump, args=(demo.stdout, lines, seen), daemon=True)
    reader.start()
    deadline = time.monotonic() + DURATION_S + 5
    children: list[psutil.Process] = []
    tmp: str | None = None
    try:
        tmp = _wait_line(lines, r"^logs: (\S+)", deadline, seen).group(1)
        redis_url = _wait_line(lines, r"^REDIS_URL=(redis://\S+)", deadline, seen).group(1)
        assert not redis_url.startswith("redis://127.0.0.1:1/"), "it must start its own Redis"
        result = _wait_line(lines, r"^DEMO_RESULT .*", deadline, seen).group(0)
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 6, children  # redis, simulator, 2 workers (+pools), beat, flower

        ping = _ping(redis_url)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert ping.stdout.count("pong") >= 2, ping.stdout  # both workers answer

        assert demo.wait(DURATION_S + 30) == 0, "".join(seen)[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        reader.join(5)
        demo.stdout.close()

    fields = dict(re.findall(r"(\w+)=(\d+)", result))
    assert fields["all_delivered"] == "1"
    assert fields["delivered"] == fields["deliverable"] == "200", result
    assert fields["dead_lettered"] == "0"
    assert fields["rejected"] == "3"
    # every 25th of the 200 is sent twice: coalesced while pending, or deduplicated if its first
    # copy was already delivered; never delivered twice
    assert int(fields["coalesced"]) + int(fields["deduplicated"]) == 8, result
    output = "".join(seen)
    assert "stopped; logs are in" in output
    assert "killed" not in output, output[-3000:]

    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {alive}"
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
