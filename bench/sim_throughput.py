"""Throughput of the b24sim simulator over keep-alive connections (loopback only).

python bench/sim_throughput.py [--threads 4] [--requests 20000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from b24sim import METHOD, PortalConfig, Simulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--requests", type=int, default=20000, help="total request budget")
    ap.add_argument("--seconds", type=float, default=10.0, help="time budget")
    ap.add_argument("--subprocess", action="store_true", help="run the simulator in a subprocess")
    args = ap.parse_args()
    if args.subprocess:
        cmd = [
            sys.executable,
            "-m",
            "b24sim",
            "--portal",
            "bench",
            "--rate",
            "1e9",
            "--burst",
            "1e9",
        ]
        root = Path(__file__).resolve().parents[1]
        with subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            kw = info["portals"]["bench"]
            run(args, kw["client_endpoint"] + METHOD, kw["access_token"], info["base_url"])
            proc.terminate()
        return
    with Simulator() as sim:
        creds = sim.add_portal(PortalConfig(member_id="bench", rate_per_s=1e9, burst=1e9))
        run(args, creds.client_endpoint + METHOD, creds.access_token, sim.base_url)


def run(args: argparse.Namespace, url: str, token: str, base_url: str) -> None:
    body = {
        "auth": token,
        "CONNECTOR": "bench",
        "LINE": 1,
        "MESSAGES": [{"im": {"chat_id": 1, "message_id": i}} for i in range(10)],
    }
    per_thread = args.requests // args.threads
    counts = [0] * args.threads
    errors = [0] * args.threads
    start = threading.Barrier(args.threads + 1)

    def worker(i: int) -> None:
        with requests.Session() as s:
            s.trust_env = False
            s.post(url, json=body, timeout=10)  # open the keep-alive connection
            start.wait()
            deadline = time.perf_counter() + args.seconds
            for _ in range(per_thread):
                if s.post(url, json=body, timeout=10).status_code != 200:
                    errors[i] += 1
                counts[i] += 1
                if time.perf_counter() > deadline:
                    break

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    total = sum(counts)
    print(
        f"{total} requests in {elapsed:.2f}s from {args.threads} threads: "
        f"{total / elapsed:.0f} req/s, {sum(errors)} non-200, "
        f"{_recorded(base_url)} messages recorded"
    )


def _recorded(base_url: str) -> int:
    with requests.Session() as s:
        s.trust_env = False
        total: int = s.get(base_url + "/_sim/state?records=0", timeout=10).json()["accepted_total"]
        return total


if __name__ == "__main__":
    main()
