"""Helpers for the platform-behaviour tests: start a fleet with portals, read what happened, and
print it (run with `-s`): the calls the simulator saw, refreshes per OAuth server, what was
delivered, parked or dead-lettered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from b24producer import Producer
from b24sim import PortalConfig, Simulator
from tests.harness import ROOT, Fleet, delivered_ids, producer, wait_for
from worker.ops.parking import list_parked
from worker.store.keys import Keys


def start(
    fleet: Fleet,
    sim: Simulator,
    redis_url: str,
    *configs: PortalConfig,
    register: dict[str, Any] | None = None,
    **env: str,
) -> Producer:
    """One worker (with beat), the portals added to the simulator and registered."""
    fleet.start(concurrency=2, beat=True, **env)
    p = producer(redis_url)
    for config in configs or (PortalConfig(member_id="p1"),):
        p.register_portal(**{**sim.add_portal(config).as_register_kwargs(), **(register or {})})
        wait_for(lambda c=config: portal(fleet, c.member_id).get("version"), what="registration")
    return p


def client(fleet: Fleet) -> redis.Redis:
    return redis.Redis.from_url(fleet.redis_url)


def portal(fleet: Fleet, member_id: str) -> dict[str, str]:
    raw = client(fleet).hgetall(Keys().portal(member_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def dead(fleet: Fleet) -> list[dict[str, Any]]:
    return [json.loads(v) for v in client(fleet).hvals(Keys().dead_data)]


def parked(fleet: Fleet) -> list[dict[str, Any]]:
    return list_parked(client(fleet), Keys())


def parked_reason(fleet: Fleet, member_id: str, connector: str | None = None) -> str:
    for record in parked(fleet):
        if record["portal"] == member_id and record["connector"] == connector:
            return str(record["reason"])
    return ""


def report(title: str, sim: Simulator, fleet: Fleet, *portals: str) -> None:
    """What a behaviour led to, for the reader of `pytest -s`."""
    print(f"\n[{title}]")
    for member_id in portals:
        calls = [f"{c.address.rsplit('/', 3)[-3]}:{c.outcome}" for c in sim.calls(member_id)]
        print(f"  {member_id}: calls {calls}")
        print(f"  {member_id}: delivered im.message_ids {sorted(delivered_ids(sim, member_id))}")
    print(f"  refreshes per OAuth server: {sim.refresh_counts()}")
    print(f"  parked: {[(p['portal'], p['connector'], p['reason']) for p in parked(fleet)]}")
    print(f"  dead-lettered: {[(d['message_id'], d['code']) for d in dead(fleet)]}")


@contextmanager
def owner_app(redis_url: str, tmp: Path) -> Iterator[redis.Redis]:
    """The connector service's own Celery app in its own worker process, consuming the token
    tasks from queue `owner`; yields a client to read what it received (`owner:received`)."""
    log_path = tmp / "owner.log"
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "celery", "-A", "tests.integration.owner_app", "worker"]
    args += ["-Q", "owner", "-c", "1", "--without-mingle", "--without-gossip", "-l", "info"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    r = redis.Redis.from_url(redis_url)
    try:
        wait_for(
            lambda: "ready." in log_path.read_text(errors="replace") or process.poll() is not None,
            30,
            what="the owner app to start",
        )
        assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
        yield r
    finally:
        process.terminate()
        process.wait(15)
        r.close()


def received(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(v) for v in r.lrange("owner:received", 0, -1)]
