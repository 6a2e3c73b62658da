"""Processes of a benchmark run: each in its own process group, all stopped at the end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parents[1]
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: loopback never through a proxy, the repo on the path."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env.update(PYTHONPATH=str(ROOT), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(extra)
    return env


class Procs:
    """Spawns children in new sessions (process groups); `stop_all` ends each group it made."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self._running: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._running.append((name, proc, log))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
        """SIGTERM the child's process group, SIGKILL it if it lingers."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # pool children of a worker killed by SIGKILL may outlive their parent in the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for item in [i for i in self._running if i[1] is proc]:
            item[2].close()
            self._running.remove(item)

    def stop_all(self) -> None:
        for _, proc, _ in reversed(list(self._running)):
            self.stop(proc)


def celery_worker(
    procs: Procs, app: str, name: str, queues: str, env: dict[str, str], beat_dir: Path | None
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-c", "2",
        "--without-mingle", "--without-gossip", "-n", f"{name}@bench",
        "-l", env.get("BENCH_OURS_LOG_LEVEL", "warning"),
    ]  # fmt: skip
    if beat_dir is not None:
        cmd += ["-B", "-s", str(beat_dir / "celerybeat-schedule")]
    return procs.spawn(name, cmd, env)


class Sim:
    """The b24sim simulator in a subprocess (off the benchmark's GIL), driven over HTTP."""

    def __init__(self, procs: Procs, client_id: str, client_secret: str) -> None:
        state_file = procs.logdir / "sim-state.json"
        cmd = [
            sys.executable, "-m", "b24sim", "--port", "0", "--client-id", client_id,
            "--client-secret", client_secret, "--state-file", str(state_file),
        ]  # fmt: skip
        self.proc = procs.spawn("b24sim", cmd, child_env())
        info = _wait_json(state_file, self.proc)
        self.base_url: str = info["base_url"]
        self.oauth_url: str = info["oauth_url"]
        self.http = requests.Session()
        self.http.trust_env = False

    def add_portal(self, member_id: str, rate_per_s: float, burst: float) -> dict[str, Any]:
        """A new portal; returns its `auth` block (the kwargs of portal.register)."""
        body = {"member_id": member_id, "rate_per_s": rate_per_s, "burst": burst}
        creds: dict[str, Any] = self._call("POST", "portals", body)
        keys = ("member_id", "domain", "client_endpoint", "access_token", "refresh_token")
        return {k: creds[k] for k in (*keys, "expires_in")}

    def state(self, records: bool) -> dict[str, Any]:
        return self._call("GET", f"state?records={int(records)}", None)

    def _call(self, verb: str, name: str, body: Any) -> Any:
        r = self.http.request(verb, f"{self.base_url}/_sim/{name}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()


def _wait_json(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(encoding="utf-8").endswith("\n"):
            return json.loads(path.read_text(encoding="utf-8"))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the simulator did not start; see {path.parent}/b24sim.log")
