"""Packing and many confirmations per message with real workers, the simulator over HTTP.

Platform facts checked: a `batch` request is one slot of the portal's bucket (so a slow portal
takes many lines' groups per slot); whether imconnector.send.status.delivery runs inside
`batch` is not documented, and a portal that refuses it must still get everything, one call per
group, with nothing dead-lettered.
"""

from __future__ import annotations

import redis

from b24sim import PortalConfig, Simulator
from tests.harness import (
    Fleet,
    confirmation,
    dead_letters,
    delivered_ids,
    portal_hash,
    producer,
    rejected_records,
    stats,
    wait_for,
)
from tests.integration.test_operator import cli

LINES = 12
PER_LINE = 5


def _send_spread(redis_url: str, portal: str) -> list[int]:
    p = producer(redis_url)
    ids = []
    for i in range(PER_LINE):
        batch = [confirmation(portal, 1000 * line + i, line=line) for line in range(1, LINES + 1)]
        p.confirm_many(batch)
        ids += [c["im"]["message_id"] for c in batch]
    return sorted(ids)


def test_a_slow_portal_gets_many_lines_per_request(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start()
    creds = sim.add_portal(PortalConfig(member_id="p1", rate_per_s=5, burst=3))
    # our budget a slot under the portal's, as the defaults are (45 of 50): timing jitter
    # between our clock and the portal's bucket must not cost a 503
    producer(redis_url).register_portal(
        **creds.as_register_kwargs(), packing="batch", rate_per_s=5, rate_burst=2
    )
    wait_for(lambda: r.sismember("b24d:portals", "p1"), what="registration")
    ids = _send_spread(redis_url, "p1")
    wait_for(lambda: sorted(delivered_ids(sim, "p1")) == ids, 60, what="every confirmation")
    counters = sim.counters("p1")
    assert counters["rate_limited_503"] == 0
    assert counters["batch_requests"] < LINES, "lines share requests"
    assert counters["calls"] == counters["batch_requests"], "no direct call"
    s = stats(r)
    assert s["packed_groups"] > s["packed_calls"] and not dead_letters(r)


def test_a_portal_refusing_the_method_in_batch_gets_everything_unpacked(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start()
    creds = sim.add_portal(
        PortalConfig(member_id="p1", batch_refuse="ERROR_BATCH_METHOD_NOT_ALLOWED")
    )
    producer(redis_url).register_portal(**creds.as_register_kwargs(), packing="batch")
    wait_for(lambda: r.sismember("b24d:portals", "p1"), what="registration")
    ids = _send_spread(redis_url, "p1")
    wait_for(lambda: sorted(delivered_ids(sim, "p1")) == ids, 60, what="every confirmation")
    assert not dead_letters(r)
    assert {a.via for a in sim.accepted("p1")} == {"direct"}
    assert sim.counters("p1")["batch_requests"] <= 2, "none after the first refusal answered"
    assert portal_hash(r, "p1")["packing_off_reason"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert stats(r)["packing_turned_off"] == 1
    [portal] = cli(redis_url, "portals")
    assert portal["packing"] == "batch" and portal["packing_off_reason"]
    [parked] = cli(redis_url, "parked")
    assert parked["member_id"] == "p1" and "packing_off_at" in parked


def test_confirm_many_delivers_the_valid_and_records_the_bad(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start()
    creds = sim.add_portal(PortalConfig(member_id="p1"))
    p = producer(redis_url)
    p.register_portal(**creds.as_register_kwargs())
    good = [confirmation("p1", i, line=1 + i % 3) for i in range(1, 8)]
    # past the producer's own check (it refuses these before sending): what the worker does
    # with a message another producer sent
    bad_line = [*good[:3], {**confirmation("p1", 99), "line": 0}, *good[3:]]
    p.app.send_task("delivery.confirm_many", kwargs={"confirmations": bad_line}, retry=False)
    wait_for(lambda: sorted(delivered_ids(sim, "p1")) == list(range(1, 8)), what="the valid")
    [record] = rejected_records(r)
    assert record["field"] == "confirmations[3].line" and record["task"] == "delivery.confirm_many"
    oversized = [confirmation("p1", 1)] * 501
    p.app.send_task("delivery.confirm_many", kwargs={"confirmations": oversized}, retry=False)
    wait_for(lambda: stats(r).get("rejected") == 2, what="the oversized message")
    assert rejected_records(r)[0]["field"] == "confirmations"
    assert "at most 500" in rejected_records(r)[0]["rule"]
