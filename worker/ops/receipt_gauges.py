"""Kept `delivery.sent` records as gauges (read by the exporter at scrape time, never on a
worker's hot path): how many are kept, how many no receipt confirmed by age, the oldest of
those. Bounded: the portals are read from the receipts' due index (only portals that hold
records or waiting receipts) up to `max_portals`, a handful of commands each, pipelined."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from redis import Redis

from worker.store.keys import Keys, text

#: the age buckets of unconfirmed records: 1 minute, 1 hour, 6 hours, 1 day (and all of them)
AGES_S = (0, 60, 3600, 21_600, 86_400)
CHUNK = 200


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def receipt_metrics(
    client: Redis, keys: Keys, now: float, max_portals: int
) -> tuple[list[Metric], bool]:
    """The gauges, and whether the portal limit was hit (the figures are then lower bounds)."""
    members: list[Any] = client.zrange(keys.receipts_due, 0, max_portals)
    truncated = len(members) > max_portals
    portals = [text(m) for m in members[:max_portals]]
    kept = waiting = 0
    older = dict.fromkeys(AGES_S, 0)
    oldest = now
    for chunk in _chunks(portals):
        pipe = client.pipeline(transaction=False)
        for portal in chunk:
            names = keys.receipt_keys(portal)
            pipe.zcard(names["kept_key"])
            pipe.zcard(names["waiting_key"])
            pipe.zrange(names["open_key"], 0, 0, withscores=True)
            for age in AGES_S:
                pipe.zcount(names["open_key"], "-inf", now - age)
        replies = pipe.execute()
        step = 3 + len(AGES_S)
        for n in range(len(chunk)):
            row = replies[n * step : (n + 1) * step]
            kept += int(row[0])
            waiting += int(row[1])
            if row[2]:
                oldest = min(oldest, float(row[2][0][1]))
            for age, count in zip(AGES_S, row[3:], strict=True):
                older[age] += int(count)
    unconfirmed = GaugeMetricFamily(
        "b24d_sent_unconfirmed_records",
        "kept delivery.sent records no receipt confirmed, sent at least older_than_seconds ago",
        labels=["older_than_seconds"],
    )
    for age, count in older.items():
        unconfirmed.add_metric([str(age)], float(count))
    return [
        GaugeMetricFamily(
            "b24d_sent_records",
            "delivery.sent records kept (confirmed or not) until DELIVERY_SENT_TTL_S",
            value=float(kept),
        ),
        unconfirmed,
        GaugeMetricFamily(
            "b24d_sent_oldest_unconfirmed_age_seconds",
            "age of the oldest kept delivery.sent record no receipt confirmed (0: none)",
            value=now - oldest,
        ),
        GaugeMetricFamily(
            "b24d_receipts_waiting",
            "delivery.delivered ids waiting for their delivery.sent (DELIVERY_RECEIPT_WAIT_S)",
            value=float(waiting),
        ),
    ], truncated
