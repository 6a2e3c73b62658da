"""Processes of a benchmark run, started the one way the project has (devtools/procs.py):
each in its own process group, all stopped at the end."""

from __future__ import annotations

from typing import Any

import requests

from devtools.procs import Child, Procs, simulator_args, simulator_state, worker_args


def celery_worker(
    procs: Procs, app: str, name: str, queues: str, env: dict[str, str], beat: bool
) -> Child:
    loglevel = env.get("BENCH_OURS_LOG_LEVEL", "warning")
    schedule = procs.logdir / "celerybeat-schedule" if beat else None
    args = worker_args(
        f"{name}@bench", queues=queues, loglevel=loglevel, beat_schedule=schedule, app=app
    )
    return procs.spawn(name, args, env)


class Sim:
    """The b24sim simulator in a subprocess (off the benchmark's GIL), driven over HTTP."""

    def __init__(self, procs: Procs, client_id: str, client_secret: str) -> None:
        state_file = procs.logdir / "sim-state.json"
        child = procs.spawn("b24sim", simulator_args(state_file, client_id, client_secret))
        info = simulator_state(state_file, check=procs.check)
        self.child = child
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
        state: dict[str, Any] = self._call("GET", f"state?records={int(records)}", None)
        return state

    def _call(self, verb: str, name: str, body: Any) -> Any:
        r = self.http.request(verb, f"{self.base_url}/_sim/{name}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()
