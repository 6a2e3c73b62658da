"""The exporter's names for this release: the latency histogram under Prometheus' base-unit name
(`b24d_latency_seconds`) and, for one release, under its old name with the same data; the
release itself as `b24d_build_info{version}`."""

from __future__ import annotations

import redis
from prometheus_client import CollectorRegistry

from worker.ops.exporter import StatsCollector
from worker.release import version
from worker.store.keys import Keys


def test_latency_is_served_in_seconds_and_under_its_old_name_for_one_release(
    r: redis.Redis,
) -> None:
    keys = Keys()
    r.hset(keys.stats, mapping={"latency_s_bucket:0.5": 3, "latency_s_bucket:2": 1})
    r.hset(keys.stats, "latency_s_sum", 2.5)
    registry = CollectorRegistry()
    registry.register(StatsCollector(r, keys))
    for name in ("b24d_latency_seconds", "b24d_latency_s"):
        assert registry.get_sample_value(f"{name}_count") == 4, name
        assert registry.get_sample_value(f"{name}_sum") == 2.5, name
        assert registry.get_sample_value(f"{name}_bucket", {"le": "0.5"}) == 3, name


def test_build_info_names_the_installed_version_even_when_redis_is_down() -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    registry = CollectorRegistry()
    registry.register(StatsCollector(down, Keys()))
    assert registry.get_sample_value("b24d_build_info", {"version": version()}) == 1
    assert registry.get_sample_value("b24d_exporter_redis_up") == 0
