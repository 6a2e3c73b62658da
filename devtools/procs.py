"""One way to start the project's processes and to wait on them, shared by the tests
(tests/harness.py), the demo (devtools/demo.py) and the benchmarks (bench/).

- `worker_args`, `beat_args`, `simulator_args`: the command lines of a Celery worker, beat and the
  portal simulator (Redis: `devtools.redis_local.LocalRedis`).
- `start_logged`: a child with its output in a log file; `Procs`: a set of children in their own
  process groups, checked and stopped together.
- `wait_for`: poll a condition until it holds, with a deadline; never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class WaitTimeout(AssertionError):
    """Raised when `wait_for`'s deadline passes before its condition holds (an assertion
    failure in a test)."""


class Stopped(Exception):
    """Raised when `wait_for`'s stop event is set (Ctrl-C in the demo) before the condition."""


class ChildExited(RuntimeError):
    """Raised when a child that should be running has exited; names it and its log."""


def wait_for(
    condition: Callable[[], T],
    timeout_s: float = 20.0,
    what: str = "",
    *,
    interval_s: float = 0.02,
    stop: threading.Event | None = None,
    check: Callable[[], None] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    `check` runs before each poll (e.g. `Procs.check`, to fail fast when a child died)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if stop is not None and stop.is_set():
            raise Stopped(what)
        if check is not None:
            check()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout_s}s waiting for {what or condition}")
        if stop is not None:
            stop.wait(interval_s)
        else:
            time.sleep(interval_s)


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """A child's environment: loopback never through a proxy, the repository on the path."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _PROXY_VARS}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def worker_args(
    name: str,
    *,
    queues: str = "celery,flush",
    concurrency: int = 2,
    loglevel: str = "info",
    beat_schedule: Path | None = None,
    app: str = "worker",
) -> list[str]:
    """`celery -A worker worker` (with the sweep on an embedded beat when `beat_schedule`)."""
    args = [sys.executable, "-m", "celery", "-A", app, "worker", "-n", name, "-Q", queues]
    args += ["-c", str(concurrency), "--without-mingle", "--without-gossip", "-l", loglevel]
    if beat_schedule is not None:
        args += ["-B", "-s", str(beat_schedule)]
    return args


def beat_args(schedule: Path, loglevel: str = "info", app: str = "worker") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", app, "beat", "-s", str(schedule), "-l", loglevel]


def simulator_args(state_file: Path, client_id: str, client_secret: str, *extra: str) -> list[str]:
    """The portal simulator on a free loopback port; it writes its URLs to `state_file`."""
    args = [sys.executable, "-m", "b24sim", "--host", "127.0.0.1", "--port", "0"]
    args += ["--client-id", client_id, "--client-secret", client_secret]
    return [*args, "--state-file", str(state_file), *extra]


def simulator_state(state_file: Path, timeout_s: float = 20.0, **wait: Any) -> dict[str, Any]:
    """The simulator's first state line (base_url, oauth_url, portals), once it is written."""

    def ready() -> str:
        text = state_file.read_text(encoding="utf-8") if state_file.exists() else ""
        return text if text.endswith("\n") else ""

    info: dict[str, Any] = json.loads(wait_for(ready, timeout_s, "the simulator", **wait))
    return info


def start_logged(
    args: list[str], log_path: Path, env: Mapping[str, str], *, new_session: bool = True
) -> subprocess.Popen[bytes]:
    """Start `args` in the repository with stdout and stderr in `log_path`; in a process group
    of its own unless asked otherwise (so a terminal's Ctrl-C reaches only the parent)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a worker's pool and, with `-B`, its beat)."""
    out = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL `process` and its children (a crash, not a shutdown), and reap it."""
    for pid in [*child_pids(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(10)


def stop_process(
    process: subprocess.Popen[bytes], deadline_s: float = 15.0, name: str = ""
) -> bool:
    """SIGTERM `process` (a warm shutdown for a worker), wait up to `deadline_s`, then
    `kill_tree` what is left; whether it stopped by itself. (A prefork worker's warm shutdown
    can take 30 s longer than its tasks, billiard waiting for a pool process's last results to
    be counted (docs/operations/deployment.md): a test whose subject is not the stop need not
    wait for that, nor leave the process running into the next test.)"""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(deadline_s)
        return True
    except subprocess.TimeoutExpired:
        print(f"killed {name or process.pid} (did not stop within {deadline_s:.0f}s)", flush=True)
        kill_tree(process)
        return False


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


@dataclass
class Procs:
    """Children in their own process groups, logging to `logdir`, stopped together."""

    logdir: Path
    env: dict[str, str] = field(default_factory=child_env)
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> Child:
        log_path = self.logdir / f"{name}.log"
        child = Child(
            name, start_logged(args, log_path, self.env if env is None else env), log_path
        )
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise ChildExited when any child has exited."""
        for child in self.children:
            if not child.alive():
                raise ChildExited(
                    f"{child.name} exited with {child.process.returncode}; "
                    f"{child.log_path}:\n{child.log_tail()}"
                )

    def stop(self, children: list[Child] | None = None, deadline_s: float = 15.0) -> None:
        """SIGTERM each group, wait until the deadline, SIGKILL what is left (a worker's pool
        processes too), newest first."""
        chosen = list(self.children if children is None else children)
        for child in reversed(chosen):
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + deadline_s
        for child in reversed(chosen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.1, deadline - time.monotonic()))
        for child in reversed(chosen):
            child.signal_group(signal.SIGKILL)
            if child.alive():
                print(f"killed {child.name} (did not stop within {deadline_s:.0f}s)", flush=True)
                child.process.wait(5)
            self.children.remove(child)
