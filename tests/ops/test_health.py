"""The liveness probes the compose file, the Dockerfile and deploy/kubernetes use, each seen
healthy and unhealthy against real processes: `health worker`, `health beat`, `/healthz`."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import redis

from devtools.redis_local import LocalRedis
from tests.harness import ROOT, Fleet, wait_for
from tests.ops.conftest import cli, exporter, get


def test_health_worker_answers_only_while_the_worker_runs(fleet: Fleet) -> None:
    worker = fleet.start(concurrency=1, beat=False)
    node = f"{worker.name}@{socket.gethostname()}"
    code, line = cli(fleet, "health", "worker", "--node", node)
    assert code == 0, line
    assert line.startswith("ok:") and "pool processes 1" in line and "\n" not in line

    code, line = cli(fleet, "health", "worker", "--node", f"nobody@{socket.gethostname()}")
    assert code == 1 and line.startswith("unhealthy:"), line

    worker.stop()
    code, line = cli(fleet, "health", "worker", "--node", node, "--timeout-s", "1")
    assert code == 1 and "no answer from" in line, line


def test_health_worker_without_a_broker_is_unhealthy_in_one_line(fleet: Fleet) -> None:
    dead = LocalRedis().start()
    url = dead.url
    dead.close()
    code, line = cli(fleet, "health", "worker", "--timeout-s", "1", REDIS_URL=url)
    assert code == 1 and line.startswith("unhealthy:") and "\n" not in line, line


def test_health_beat_follows_the_sweep(fleet: Fleet, r: redis.Redis) -> None:
    code, line = cli(fleet, "health", "beat")
    assert (code, line) == (1, "unhealthy: the sweep has never run")

    worker = fleet.start(concurrency=1, beat=True)  # DELIVERY_SWEEP_INTERVAL_S=0.2
    wait_for(lambda: r.exists("b24d:sweep:last_run"), 20, what="the first sweep")
    code, line = cli(fleet, "health", "beat", "--intervals", "25")
    assert code == 0 and line.startswith("ok: the sweep ran"), line

    worker.stop()  # beat and the only flush consumer gone: 5 intervals are 1 s
    wait_for(
        lambda: cli(fleet, "health", "beat", "--intervals", "5")[0] == 1,
        20,
        interval_s=0.3,
        what="health beat to fail",
    )
    code, line = cli(fleet, "health", "beat", "--intervals", "5")
    assert "unhealthy: the sweep last ran" in line and "(limit 1s)" in line, line


def test_exporter_healthz_follows_redis(fleet: Fleet, tmp_path: Path) -> None:
    own = LocalRedis().start()
    try:
        with exporter(fleet, tmp_path, "--redis-timeout-s", "1", REDIS_URL=own.url) as base:
            assert get(f"{base}/healthz") == (200, "ok\n")
            status, body = get(f"{base}/metrics")
            assert status == 200 and "b24d_exporter_redis_up 1.0" in body

            own.stop(kill=True)
            status, body = get(f"{base}/healthz")
            assert status == 503 and body.startswith("redis: ConnectionError"), body
            status, body = get(f"{base}/metrics")
            assert status == 200 and "b24d_exporter_redis_up 0.0" in body
            assert "b24d_exporter_redis_errors_total 1.0" in body

            own.start()
            assert get(f"{base}/healthz") == (200, "ok\n")
    finally:
        own.close()


def test_every_probe_in_the_manifests_is_a_real_command() -> None:
    """The Kubernetes example calls only subcommands and flags the CLI accepts."""
    from worker.cli import parser

    commands = []
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for match in re.finditer(r"command: (\[.*?\])", path.read_text(), re.S):
            command = json.loads(match.group(1))
            if command[0] == "b24-delivery":
                commands.append(command[1:])
                parser().parse_args(command[1:])  # exits 2 on anything unknown
    probes = {tuple(c[:2]) for c in commands}
    assert {("health", "worker"), ("health", "beat"), ("metrics", "--address")} <= probes
    exporter = (ROOT / "deploy" / "kubernetes" / "exporter.yaml").read_text()
    assert "path: /healthz" in exporter
