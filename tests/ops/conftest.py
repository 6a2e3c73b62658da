"""Helpers of the operations tests: the operator CLI and the exporter as real processes."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.redis_local import free_port
from tests.harness import ROOT, Fleet, wait_for


def cli(fleet: Fleet, *args: str, timeout_s: float = 30, **env: str) -> tuple[int, str]:
    """`b24-delivery ARGS` (as `python -m worker.cli`) in the fleet's environment."""
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=ROOT,
        env=fleet.environment(**env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def get(url: str, timeout_s: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 (loopback)
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


@contextmanager
def exporter(fleet: Fleet, tmp: Path, *args: str, **env: str) -> Iterator[str]:
    """`b24-delivery metrics` on a free loopback port; yields its base URL."""
    port = free_port()
    log = (tmp / f"exporter-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "metrics", "--port", str(port), *args],
        cwd=ROOT,
        env=fleet.environment(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            get(f"{base}/healthz", 1)
        except OSError:
            assert process.poll() is None, (tmp / f"exporter-{port}.log").read_text()
            return False
        return True

    try:
        wait_for(answers, 30, what="the exporter to listen")
        yield base
    finally:
        process.terminate()
        process.wait(10)
        log.close()
