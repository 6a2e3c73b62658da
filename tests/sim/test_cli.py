"""CLI start/stop through a subprocess, and startup time."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from b24sim import METHOD, Simulator
from tests.harness import run_python

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def simulator_cli(*switches: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """`python -m b24sim` with these switches: the process and the JSON line it prints first;
    killed on the way out if the test did not stop it."""
    cmd = [sys.executable, "-m", "b24sim", *switches]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc, json.loads(proc.stdout.readline())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_start_call_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    switches = ["--port", "0", "--client-id", "cid", "--client-secret", "sec"]
    switches += ["--portal", "m1", "--portal", "m2", "--burst", "10", "--state-file", str(state)]
    with simulator_cli(*switches) as (proc, info):
        assert json.loads(state.read_text()) == info
        assert info["oauth_url"] == info["base_url"] + "/oauth/token/"
        m1 = info["portals"]["m1"]
        assert set(info["portals"]) == {"m1", "m2"}
        body = {
            "auth": m1["access_token"],
            "CONNECTOR": "c",
            "LINE": 1,
            "MESSAGES": [{"im": {"chat_id": 1, "message_id": 1}}],
        }
        with requests.Session() as s:
            assert s.post(m1["client_endpoint"] + METHOD, json=body, timeout=5).status_code == 200
            st = s.get(info["base_url"] + "/_sim/state", timeout=5).json()
            assert st["portals"]["m1"]["config"]["burst"] == 10
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


def test_cli_refuses_remote_host() -> None:
    r = run_python("-m", "b24sim", "--host", "0.0.0.0", timeout_s=10, check=False)
    assert r.returncode == 2
    assert "--allow-remote" in r.stderr


def test_startup_under_one_second() -> None:
    t0 = time.perf_counter()
    with Simulator() as sim, requests.Session() as s:
        assert s.get(sim.base_url + "/_sim/state", timeout=5).status_code == 200
        assert time.perf_counter() - t0 < 1.0


def test_cli_new_switches(tmp_path: Path) -> None:
    """--oauth-servers, --portal-oauth-server, --oauth-delay, --move, --refuse-in-batch,
    --strict: the printed line names the regional token URLs and the moved address."""
    switches = ["--port", "0", "--portal", "m1", "--portal", "m2", "--oauth-servers", "1"]
    switches += ["--portal-oauth-server", "1", "--oauth-delay", "0.05", "--move", "m1:307"]
    switches += ["--refuse-in-batch", "WRONG_AUTH_TYPE", "--strict"]
    with simulator_cli(*switches) as (proc, info):
        assert len(info["oauth_servers"]) == 2
        assert info["oauth_servers"][0] == info["oauth_url"]
        m1 = info["portals"]["m1"]
        assert (
            m1["server_endpoint"] == info["oauth_servers"][1].removesuffix("oauth/token/") + "rest/"
        )
        assert set(info["moved"]) == {"m1"} and info["moved"]["m1"] != m1["client_endpoint"]
        with requests.Session() as s:
            r = s.get(m1["client_endpoint"] + METHOD, allow_redirects=False, timeout=5)
            assert (r.status_code, r.headers["Location"]) == (307, info["moved"]["m1"] + METHOD)
            st = s.get(info["base_url"] + "/_sim/state?records=0", timeout=5).json()
            assert st["strict"] is True
            assert [o["delay_s"] for o in st["oauth_servers"]] == [0.05, 0.05]
            assert st["portals"]["m2"]["config"]["batch_refuse"] == "WRONG_AUTH_TYPE"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_cli_help_documents_the_switches() -> None:
    r = run_python("-m", "b24sim", "--help", timeout_s=10, check=True)
    for flag in ("--strict", "--oauth-servers", "--oauth-delay", "--move", "--refuse-in-batch"):
        assert flag in r.stdout
    assert "/_sim/" in r.stdout
