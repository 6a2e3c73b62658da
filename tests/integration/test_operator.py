"""The operator's tools: the CLI (stats, portals, rejected, dead letters) and the exporter."""

from __future__ import annotations

import json

import redis
from prometheus_client import CollectorRegistry, generate_latest

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import (
    Fleet,
    confirmation,
    delivered_ids,
    producer,
    run_cli,
    stats,
    wait_for,
)
from worker.ops.exporter import StatsCollector
from worker.store.keys import Keys


def cli(redis_url: str, *args: str) -> list[dict[str, object]]:
    run = run_cli(redis_url, *args, check=True)
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_dead_letters_can_be_listed_replayed_and_purged(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start()
    p = producer(redis_url)
    creds = sim.add_portal(PortalConfig(member_id="p1"))
    p.register_portal(**creds.as_register_kwargs())
    sim.inject(Fault(error="ERROR_ARGUMENT", count=2, portal="p1"))
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: stats(r).get("dead_lettered") == 1, what="a dead letter")
    p.confirm(**confirmation("p1", 2, line=9))
    wait_for(lambda: stats(r).get("dead_lettered") == 2, what="a second dead letter")

    dead = cli(redis_url, "dead", "list")
    assert [(d["group"], d["message_id"], d["code"]) for d in dead] == [
        ("p1:myconnector:107", "1", "ERROR_ARGUMENT"),
        ("p1:myconnector:9", "2", "ERROR_ARGUMENT"),
    ]
    assert dead[0]["element"] == {
        "im": {"chat_id": 323, "message_id": 1},
        "message": {"id": ["ext-1"], "date": 1738065600},
        "chat": {"id": "channel-123"},
    }
    assert cli(redis_url, "dead", "replay", "--id", str(dead[0]["id"])) == [{"replayed": 1}]
    wait_for(lambda: delivered_ids(sim) == [1], what="the replayed confirmation")
    assert cli(redis_url, "dead", "purge") == [{"purged": 1}]
    assert cli(redis_url, "dead", "list") == []

    counters = cli(redis_url, "stats")[0]
    assert counters["delivered"] == 1 and counters["dead_lettered"] == 2  # numbers, not strings
    portals = cli(redis_url, "portals")
    assert portals[0]["member_id"] == "p1" and portals[0]["domain"] == creds.domain
    assert creds.access_token not in json.dumps(portals)
    assert creds.refresh_token not in json.dumps(portals)


def test_rejected_payloads_are_listed_with_field_and_rule(
    fleet: Fleet, redis_url: str, r: redis.Redis
) -> None:
    fleet.start()
    p = producer(redis_url)
    p.app.send_task("delivery.confirm", kwargs={**confirmation("p1", 1), "line": "x"})
    wait_for(lambda: stats(r).get("rejected") == 1, what="a rejection")
    [record] = cli(redis_url, "rejected")
    assert record["field"] == "line" and record["error"] == "line must be a positive integer"


def test_the_exporter_exposes_fleet_counters_and_histograms(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start()
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="p1")).as_register_kwargs())
    for i in range(7):
        p.confirm(**confirmation("p1", i + 1))
    wait_for(lambda: stats(r).get("delivered") == 7, what="7 delivered")
    registry = CollectorRegistry()
    registry.register(StatsCollector(r, Keys()))
    exposition = generate_latest(registry).decode()
    assert "b24d_delivered_total 7.0" in exposition
    assert "b24d_pending 0.0" in exposition
    assert 'b24d_batch_size_bucket{le="5"} 0.0' in exposition
    assert 'b24d_batch_size_bucket{le="10"} 1.0' in exposition
    assert "b24d_latency_s_count 7.0" in exposition
    calls = sim.counters("p1")["calls"]
    assert f'b24d_calls_total{{outcome="done"}} {float(calls)}' in exposition
