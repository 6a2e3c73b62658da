"""Prometheus metrics for the whole fleet, read from Redis at scrape time.

The counters and histograms are kept by the Lua scripts in the `stats` hash (one place for the
whole fleet, no multiprocess bookkeeping); this exporter turns one HGETALL into the exposition
format, adds the state gauges of worker/ops/gauges.py (queues, parking, ages, token expiry) and its
own health: `b24-delivery metrics` (port 9818 unless `--port`; the Procfile's `metrics:` line)
serves `/metrics` and `/healthz` (200 when Redis answers a PING within the timeout, else 503).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from prometheus_client import make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from redis import Redis

from worker.flush.policy import counted_code
from worker.ops.gauges import Limits, state_metrics
from worker.release import version
from worker.store.keys import Keys, text
from worker.store.scripts import HISTOGRAM_BOUNDS

COUNTERS = {
    "ingested": "confirmations accepted into a group's buffer",
    "coalesced": "confirmations merged with a pending one of the same im.message_id",
    "deduplicated": "repeats of an im.message_id the group delivered within the dedup window",
    "rejected": "payloads rejected by validation",
    "without_message_id": "confirmations accepted without message.id (the portal's external id)",
    "delivered": "confirmations the portal accepted",
    "dead_lettered": "confirmations dead-lettered",
    "rate_waits": "flushes that waited for the portal's rate budget",
    "share_waits": "flushes of partial batches that waited for the portal's budget share",
    "refresh_waits": "flushes that waited for a token refresh instead of calling the portal",
    "leases_expired": "leases recovered from dead flushers",
    "token_refreshes": "OAuth token refreshes",
    "token_refresh_failures": "failed OAuth token refreshes",
    "token_key_missing": (
        "flushes deferred: this worker lacks the key a portal's tokens were sealed with "
        "(DELIVERY_TOKEN_KEYS)"
    ),
    "registrations": "portal.register calls",
    "replica_wait_timeouts": (
        "ingests and receipt scripts whose WAIT for DELIVERY_REPLICA_ACKS replicas timed out"
    ),
    "packed_calls": "batch requests made for packed groups (one slot of the budget each)",
    "packed_groups": "groups sent inside batch requests",
    "packing_turned_off": "portals that refused the method inside batch (packing off for them)",
    "sent_kept": "delivery.sent records kept",
    "sent_repeated": "repeats of a kept delivery.sent (same Bitrix24 and external ids)",
    "sent_over_cap": "delivery.sent refused: the portal held DELIVERY_SENT_MAX_PER_PORTAL records",
    "sent_expired": "delivery.sent records dropped at DELIVERY_SENT_TTL_S",
    "sent_expired_unconfirmed": "delivery.sent records dropped at their TTL, never confirmed",
    "receipts_matched": "delivery.sent records a receipt confirmed (one confirmation each)",
    "receipts_deduplicated": "receipt ids naming a record already confirmed",
    "receipts_waiting": "receipt ids that arrived before their delivery.sent and waited",
    "receipts_unmatched": "receipt ids rejected: no delivery.sent within DELIVERY_RECEIPT_WAIT_S",
}
#: the default listen port: 9808, the earlier default, is celery-exporter's (`--port` sets any)
DEFAULT_PORT = 9818
#: per histogram in the stats hash: its metric names (the first current, any further ones kept
#: for a release under their old name, see CHANGELOG.md), help text and bounds (the scripts',
#: worker.store.scripts.HISTOGRAM_BOUNDS)
HISTOGRAMS = {
    "latency_s": (
        ("b24d_latency_seconds", "b24d_latency_s"),
        "enqueue-to-delivered latency in seconds",
        HISTOGRAM_BOUNDS["latency_s"],
    ),
    "batch_size": (
        ("b24d_batch_size",),
        "confirmations per successful call",
        HISTOGRAM_BOUNDS["batch_size"],
    ),
}


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class StatsCollector(Collector):
    """The stats hash as counters and histograms, plus the state gauges (when `limits`)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        limits: Limits | None = None,
        broker_queues: tuple[str, ...] = (),
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.limits = limits
        self.broker_queues = broker_queues
        self.errors = 0  # this exporter's failed reads of Redis (connection errors, timeouts)
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        metrics: list[Metric] = []
        up = 1.0
        try:
            metrics = list(self._stats())
            if self.limits is not None:
                metrics += state_metrics(self.redis, self.keys, self.limits, self.broker_queues)
        except redis.RedisError:
            up = 0.0
            with self._lock:
                self.errors += 1
        yield from metrics
        yield GaugeMetricFamily(
            "b24d_exporter_redis_up", "1 when this scrape read Redis, 0 when it failed", value=up
        )
        yield CounterMetricFamily(
            "b24d_exporter_redis_errors",
            "scrapes that failed to read Redis (connection errors and timeouts)",
            value=float(self.errors),
        )
        yield GaugeMetricFamily(
            "b24d_exporter_scrape_seconds",
            "how long this scrape's reads of Redis took",
            value=time.monotonic() - started,
        )
        build = GaugeMetricFamily(
            "b24d_build_info", "the exporter's b24-delivery release (value 1)", labels=["version"]
        )
        build.add_metric([version()], 1.0)
        yield build

    def _stats(self) -> Iterable[Metric]:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(self.keys.stats).items()}
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"b24d_{name}", doc, value=float(raw.get(name, 0)))
        errors = CounterMetricFamily(
            "b24d_api_errors",
            "Bitrix24 errors by code (codes outside the tables: OTHER)",
            labels=["code"],
        )
        by_code: dict[str, float] = {}
        for key, value in raw.items():
            if key.startswith("api_error:"):
                # bounded even for counts an older worker stored under a portal's own code
                code = counted_code(key.split(":", 1)[1])
                by_code[code] = by_code.get(code, 0.0) + float(value)
        for code, total in sorted(by_code.items()):
            errors.add_metric([code], total)
        yield errors
        calls = CounterMetricFamily(
            "b24d_calls",
            "calls made to portals, by outcome (auth: the token was expired or refused)",
            labels=["outcome"],
        )
        for key, value in raw.items():
            if key.startswith("calls:"):
                calls.add_metric([key.split(":", 1)[1]], float(value))
        yield calls
        yield GaugeMetricFamily(
            "b24d_pending", "confirmations waiting in buffers", value=float(raw.get("pending", 0))
        )
        yield GaugeMetricFamily(
            "b24d_dead_letters", "dead letters kept", value=float(self.redis.zcard(self.keys.dead))
        )
        for name, (metric_names, doc, bounds) in HISTOGRAMS.items():
            cumulative, buckets = 0.0, []
            for le in [*map(_bound, bounds), "+Inf"]:
                cumulative += float(raw.get(f"{name}_bucket:{le}", 0))
                buckets.append((le, cumulative))
            current, *old = metric_names
            total = float(raw.get(f"{name}_sum", 0))
            yield HistogramMetricFamily(current, doc, buckets=buckets, sum_value=total)
            for old_name in old:
                old_doc = f"{doc} (old name of {current}, served until 0.3.0)"
                yield HistogramMetricFamily(old_name, old_doc, buckets=buckets, sum_value=total)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_app(registry: CollectorRegistry, client: Redis) -> WSGIApp:
    """`/healthz` (Redis answers PING) beside prometheus_client's `/metrics`."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        try:
            client.ping()
            status, body = "200 OK", b"ok\n"
        except redis.RedisError as exc:
            status, body = "503 Service Unavailable", f"redis: {type(exc).__name__}\n".encode()
        start_response(status, [("Content-Type", "text/plain"), ("Cache-Control", "no-store")])
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds: no access log."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT})"
    )
    parser.add_argument("--address", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--redis-timeout-s", type=float, default=5.0, help="per Redis call (default 5)"
    )
    parser.add_argument(
        "--max-portals", type=int, default=Limits.max_portals, help="portals read per scrape"
    )
    parser.add_argument(
        "--max-groups", type=int, default=Limits.max_groups, help="due groups read per scrape"
    )
    parser.add_argument(
        "--portal-labels-max",
        type=int,
        default=Limits.portal_labels_max,
        help="per-portal series only up to this many portals (default 50)",
    )


def build(args: argparse.Namespace) -> tuple[CollectorRegistry, Redis]:
    """The registry and Redis client of an exporter configured by `args` and the environment."""
    from worker.settings import Settings
    from worker.transport.sentinel import connect

    settings = Settings.from_env()
    client = connect(
        settings.redis_url, settings.redis_sentinel_master, timeout_s=args.redis_timeout_s
    )
    limits = Limits(args.max_portals, args.max_groups, args.portal_labels_max)
    # queue lengths are Redis lists only when the state Redis is also the broker
    broker = getattr(settings, "broker_url", None)
    queues = ("celery", "flush") if broker in (None, "", settings.redis_url) else ()
    registry = CollectorRegistry()
    registry.register(StatsCollector(client, Keys(settings.key_prefix), limits, queues))
    return registry, client


def serve(args: argparse.Namespace) -> int:
    """Serve `/metrics` and `/healthz` on `args.address`:`args.port` until stopped."""
    registry, client = build(args)
    server = make_server(
        args.address, args.port, wsgi_app(registry, client), _Server, _QuietHandler
    )
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prometheus exporter for b24-delivery")
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
