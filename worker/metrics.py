"""Prometheus metrics for the whole fleet, read from Redis at scrape time.

The counters and histograms are kept by the Lua scripts in the `stats` hash (one place for the
whole fleet, no multiprocess bookkeeping); this exporter turns one HGETALL into the exposition
format: `python -m worker.metrics --port 9808` (the Procfile's `metrics:` line).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

from prometheus_client import start_http_server
from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import Redis

from worker.keys import Keys, text

COUNTERS = {
    "ingested": "confirmations accepted into a group's buffer",
    "coalesced": "confirmations merged with a pending one of the same im.message_id",
    "rejected": "payloads rejected by validation",
    "delivered": "confirmations the portal accepted",
    "dead_lettered": "confirmations dead-lettered",
    "rate_waits": "flushes that waited for the portal's rate budget",
    "leases_expired": "leases recovered from dead flushers",
    "token_refreshes": "OAuth token refreshes",
    "token_refresh_failures": "failed OAuth token refreshes",
    "registrations": "portal.register calls",
}
HISTOGRAMS = {
    "latency_s": (
        "enqueue-to-delivered latency in seconds",
        (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
    ),
    "batch_size": ("confirmations per successful call", (1, 2, 5, 10, 20, 50, 100, 200, 500)),
}


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class StatsCollector(Collector):
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def collect(self) -> Iterator[Metric]:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(self.keys.stats).items()}
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"b24d_{name}", doc, value=float(raw.get(name, 0)))
        errors = CounterMetricFamily("b24d_api_errors", "Bitrix24 errors by code", labels=["code"])
        for key, value in raw.items():
            if key.startswith("api_error:"):
                errors.add_metric([key.split(":", 1)[1]], float(value))
        yield errors
        yield GaugeMetricFamily(
            "b24d_pending", "confirmations waiting in buffers", value=float(raw.get("pending", 0))
        )
        yield GaugeMetricFamily(
            "b24d_dead_letters", "dead letters kept", value=float(self.redis.zcard(self.keys.dead))
        )
        for name, (doc, bounds) in HISTOGRAMS.items():
            cumulative, buckets = 0.0, []
            for le in [*map(_bound, bounds), "+Inf"]:
                cumulative += float(raw.get(f"{name}_bucket:{le}", 0))
                buckets.append((le, cumulative))
            yield HistogramMetricFamily(
                f"b24d_{name}", doc, buckets=buckets, sum_value=float(raw.get(f"{name}_sum", 0))
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9808, help="listen port (default 9808)")
    parser.add_argument("--address", default="127.0.0.1", help="listen address (default 127.0.0.1)")


def serve(args: argparse.Namespace) -> int:
    """Serve the exposition on `args.address`:`args.port` until the process is stopped."""
    from worker.settings import Settings

    settings = Settings.from_env()
    REGISTRY.register(StatsCollector(Redis.from_url(settings.redis_url), Keys(settings.key_prefix)))
    start_http_server(args.port, addr=args.address)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prometheus exporter for b24-delivery")
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
