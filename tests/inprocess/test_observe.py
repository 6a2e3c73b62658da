"""The exporter's state gauges on a real buffer: parking by reason, ages, token expiry with
bounded cardinality, truncation of the bounded reads, and the exporter's own Redis errors."""

from __future__ import annotations

from collections.abc import Callable

import redis
from prometheus_client import CollectorRegistry

from b24sim import PortalConfig, Simulator
from devtools.redis_local import LocalRedis
from tests.inprocess.conftest import GROUP, element, fill, register
from worker.flush.flow import flush
from worker.ops.exporter import StatsCollector
from worker.ops.gauges import Limits
from worker.runtime import Runtime
from worker.store.keys import Group, Keys


def scrape(client: redis.Redis, limits: Limits) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StatsCollector(client, Keys(), limits, ("celery", "flush")))
    return registry


def test_parking_ages_and_tokens(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(batch_size=1)
    register(rt, sim)  # p1: its refresh token is revoked below, so it parks
    register(rt, sim, PortalConfig(member_id="ok"))
    sim.revoke_refresh("p1")
    sim.expire_tokens("p1")
    fill(rt, 1)
    assert flush(rt, GROUP, "task") == "park"
    rt.buffer.ingest(Group("ok", "myconnector", 1), "7", element(7))
    rt.buffer.ingest(Group("ghost", "myconnector", 1), "8", element(8))  # never registered
    r.lpush("celery", "m1", "m2")

    registry = scrape(r, Limits())
    value = registry.get_sample_value
    assert value("b24d_portals") == 2
    assert value("b24d_parked_portals", {"reason": "invalid_grant"}) == 1
    assert value("b24d_parked_groups", {"reason": "invalid_grant"}) == 1
    assert value("b24d_parked_groups", {"reason": "unregistered"}) == 1
    assert value("b24d_queue_length", {"queue": "celery"}) == 2
    assert value("b24d_queue_length", {"queue": "flush"}) == 0
    assert 0 <= (value("b24d_oldest_pending_age_seconds") or -1) < 60
    assert 0 <= (value("b24d_oldest_parked_age_seconds") or -1) < 60
    assert value("b24d_due_lateness_seconds") == 0, "nothing is overdue yet"
    assert value("b24d_portals_token_expired") == 0, "both stored tokens are within expires_in"
    assert 0 < value("b24d_token_expires_in_min_seconds") <= 3600
    assert value("b24d_portal_token_expires_in_seconds", {"portal": "ok"}) > 0
    assert value("b24d_exporter_redis_up") == 1
    assert value("b24d_exporter_scan_truncated", {"index": "due"}) == 0

    bounded = scrape(r, Limits(max_portals=10, max_groups=1, portal_labels_max=1))
    value = bounded.get_sample_value
    assert value("b24d_portal_token_expires_in_seconds", {"portal": "ok"}) is None, (
        "no per-portal series above the label limit"
    )
    assert value("b24d_token_expires_in_min_seconds") is not None, "the summary stays"
    assert value("b24d_exporter_scan_truncated", {"index": "due"}) == 1


def test_the_exporter_counts_its_own_redis_errors() -> None:
    server = LocalRedis().start()
    client = redis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        registry = scrape(client, Limits())
        assert registry.get_sample_value("b24d_exporter_redis_up") == 1
        server.stop(kill=True)
        for _ in range(2):
            assert registry.get_sample_value("b24d_exporter_redis_up") == 0
        # every read is a scrape: two above, and this one is the third that failed
        assert registry.get_sample_value("b24d_exporter_redis_errors_total") == 3
        assert registry.get_sample_value("b24d_pending") is None, "no stale numbers"
    finally:
        client.close()
        server.close()
