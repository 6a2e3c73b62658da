"""Probes leave nothing behind on the Redis broker: `health worker` and `celery inspect` consume
their replies without acknowledgement, so none stays in kombu's `unacked` hash and no restore of
"messages of consumers whose heartbeat expired" follows (a probe every few seconds would
otherwise log false recoveries for ever, and `b24d_queue_unacked` would count them)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from tests.harness import ROOT, Fleet, wait_for
from tests.ops.conftest import cli
from worker.transport.kombu_redis.recovery import HOLDERS_KEY

#: short, so that a recorded reply's holder would expire (and be restored) within the test
TTL = {"DELIVERY_CONSUMER_TTL_S": "2"}


@pytest.mark.timeout(180)
def test_probes_leave_no_unacked_reply_and_trigger_no_restore(fleet: Fleet, r: redis.Redis) -> None:
    worker = fleet.start(concurrency=1, beat=False, **TTL)
    for _ in range(3):
        code, line = cli(fleet, "health", "worker", "--timeout-s", "5", **TTL)
        assert code == 0, line
    inspect = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "inspect", "ping", "--timeout", "3"],
        cwd=ROOT,
        env=fleet.environment(**TTL),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert inspect.returncode == 0 and "pong" in inspect.stdout, inspect.stdout + inspect.stderr
    assert r.hlen("unacked") == 0, r.hgetall("unacked")
    assert r.zcard("unacked_index") == 0 and r.hlen(HOLDERS_KEY) == 0
    # a recorded reply's holder (the probe's process, gone) would expire within the TTL, and
    # the worker's restore cycle (every fifth of it) would put the reply back and log it
    with pytest.raises(AssertionError):
        wait_for(lambda: "restored" in worker.log(), 3 * 2.0, interval_s=0.2)
    assert r.hlen("unacked") == 0
    print("\n[probes] 3 x health worker + celery inspect ping: unacked 0, no restore logged")
