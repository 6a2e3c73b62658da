"""The fleet's state as gauges an on-call can alert on, read by the exporter at scrape time.

Never on a worker's hot path. Each read is bounded: the portal index is walked with SSCAN up to
`max_portals`, the due index read up to `max_groups` (earliest first), in pipelined chunks; a
limit that was hit shows as `b24d_exporter_scan_truncated{index}` = 1, and the ages are then
lower bounds. Per-portal series (token expiry) only below `portal_labels_max` portals, so a fleet
of thousands of portals stays a handful of series; above it the summary gauges remain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from redis import Redis

from worker.flush.policy import counted_code
from worker.ops.receipt_gauges import receipt_metrics
from worker.store.keys import Group, Keys, text
from worker.store.scripts import PARKED  # the scripts' "until portal.register"

#: kombu's Redis transport keeps priorities 3, 6 and 9 in lists of their own
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
CHUNK = 500


@dataclass(frozen=True)
class Limits:
    max_portals: int = 20_000
    max_groups: int = 10_000
    portal_labels_max: int = 50


@dataclass
class PortalView:
    registered: set[str] = field(default_factory=set)
    parked: dict[str, str] = field(default_factory=dict)  # member_id -> reason
    expires_in: dict[str, float] = field(default_factory=dict)
    truncated: bool = False


def _chunks(items: list[str], size: int = CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_portals(client: Redis, keys: Keys, now: float, limit: int) -> PortalView:
    view = PortalView()
    for member in client.sscan_iter(keys.portals, count=CHUNK):
        if len(view.registered) >= limit:
            view.truncated = True
            break
        view.registered.add(text(member))
    fields = ["blocked_until", "block_reason", "expires_at"]
    for chunk in _chunks(sorted(view.registered)):
        pipe = client.pipeline(transaction=False)
        for member in chunk:
            pipe.hmget(keys.portal(member), fields)
        for member, (blocked, reason, expires) in zip(chunk, pipe.execute(), strict=True):
            if blocked is not None and float(blocked) > now:
                view.parked[member] = text(reason) if reason else "unknown"
            if expires is not None:
                view.expires_in[member] = float(expires) - now
    return view


def read_groups(client: Redis, keys: Keys, limit: int) -> tuple[list[tuple[str, float]], bool]:
    """Groups in the due index (every group with pending items), earliest due first."""
    due: list[Any] = client.zrange(keys.due, 0, limit, withscores=True)
    return [(text(g), float(s)) for g, s in due[:limit]], len(due) > limit


def oldest_items(client: Redis, keys: Keys, groups: Iterable[str]) -> dict[str, float]:
    """group id -> enqueue time of its oldest pending or leased item."""
    out: dict[str, float] = {}
    for chunk in _chunks(list(groups)):
        pipe = client.pipeline(transaction=False)
        for gid in chunk:
            group = Group.parse(gid)
            pipe.zrange(keys.queue(group), 0, 0, withscores=True)
            pipe.zrange(keys.leased(group), 0, 0, withscores=True)
        replies = pipe.execute()
        for n, gid in enumerate(chunk):
            firsts = [float(r[0][1]) for r in replies[2 * n : 2 * n + 2] if r]
            if firsts:
                out[gid] = min(firsts)
    return out


def queue_lengths(client: Redis, queues: Iterable[str]) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    names = list(queues)
    for name in names:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(name + suffix)
    replies = pipe.execute()
    step = len(_PRIORITY_SUFFIXES)
    return {name: sum(replies[i * step : (i + 1) * step]) for i, name in enumerate(names)}


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


#: reasons of our own that label a parked group without being an error code
_OWN_REASONS = frozenset({"unregistered", "parked", "unknown"})


def _by_label(counts: Counter[str]) -> dict[str, float]:
    """Counts by reason, an error code outside the tables counted as OTHER (a portal never
    chooses a label value)."""
    out: Counter[str] = Counter()
    for reason, count in counts.items():
        out[reason if reason in _OWN_REASONS else counted_code(reason)] += count
    return {k: float(v) for k, v in out.items()}


def state_metrics(
    client: Redis, keys: Keys, limits: Limits, broker_queues: tuple[str, ...] = ()
) -> list[Metric]:
    seconds, micros = client.time()
    now = seconds + micros / 1e6
    out: list[Metric] = []
    if broker_queues:
        lengths = queue_lengths(client, broker_queues)
        out.append(
            _labelled(
                "b24d_queue_length",
                "messages waiting in a Celery queue (Redis broker)",
                "queue",
                {k: float(v) for k, v in lengths.items()},
            )
        )
        out.append(
            _gauge(
                "b24d_queue_unacked",
                "messages reserved by workers, not yet acknowledged (Redis broker)",
                float(client.hlen("unacked")),
            )
        )
    portals = read_portals(client, keys, now, limits.max_portals)
    groups, groups_truncated = read_groups(client, keys, limits.max_groups)
    oldest = oldest_items(client, keys, (g for g, _ in groups))

    def reason_of(gid: str) -> str | None:
        portal = gid.split(":", 1)[0]
        if portal in portals.parked:
            return portals.parked[portal]
        if portal not in portals.registered and not portals.truncated:
            return "unregistered"
        return None

    parked_groups: Counter[str] = Counter()
    active_oldest, parked_oldest = now, now
    lateness = 0.0
    for gid, due_at in groups:
        reason = reason_of(gid)
        enqueued = oldest.get(gid, now)
        if reason is not None or due_at >= PARKED:
            parked_groups[reason or "parked"] += 1
            parked_oldest = min(parked_oldest, enqueued)
        else:
            active_oldest = min(active_oldest, enqueued)
            lateness = max(lateness, now - due_at)
    out += [
        _gauge("b24d_portals", "registered portals", float(len(portals.registered))),
        _labelled(
            "b24d_parked_portals",
            "portals parked (no calls until the time or event their reason names)",
            "reason",
            _by_label(Counter(portals.parked.values())),
        ),
        _labelled(
            "b24d_parked_groups",
            "groups with pending items that wait for their portal to be unparked",
            "reason",
            _by_label(parked_groups),
        ),
        _gauge(
            "b24d_oldest_pending_age_seconds",
            "age of the oldest confirmation waiting in a group that is not parked",
            now - active_oldest,
        ),
        _gauge(
            "b24d_oldest_parked_age_seconds",
            "age of the oldest confirmation waiting in a parked group",
            now - parked_oldest,
        ),
        _gauge(
            "b24d_due_lateness_seconds",
            "how far past its due time the most overdue group is (the sweep re-triggers it)",
            lateness,
        ),
    ]
    out += _token_metrics(portals, limits)
    receipts, receipts_truncated = receipt_metrics(client, keys, now, limits.max_portals)
    out += receipts
    last = client.get(keys.sweep_last_run)
    if last is not None:
        out.append(
            _gauge(
                "b24d_sweep_last_run_age_seconds",
                "seconds since the sweep last ran (Redis' clock)",
                max(0.0, now - float(text(last))),
            )
        )
    out.append(
        _labelled(
            "b24d_exporter_scan_truncated",
            "1 when a bounded read hit its limit (ages and counts are then lower bounds)",
            "index",
            {
                "portals": float(portals.truncated),
                "due": float(groups_truncated),
                "receipts": float(receipts_truncated),
            },
        )
    )
    return out


def _token_metrics(portals: PortalView, limits: Limits) -> list[Metric]:
    expiries = portals.expires_in
    out: list[Metric] = [
        _gauge(
            "b24d_portals_token_expired",
            "portals whose stored access token is past its expiry (refreshed on next use)",
            float(sum(1 for v in expiries.values() if v <= 0)),
        ),
    ]
    if expiries:
        out.append(
            _gauge(
                "b24d_token_expires_in_min_seconds",
                "the soonest access-token expiry over all portals (negative: already expired)",
                min(expiries.values()),
            )
        )
    if len(expiries) <= limits.portal_labels_max:
        out.append(
            _labelled(
                "b24d_portal_token_expires_in_seconds",
                "seconds until a portal's access token expires (only below the label limit)",
                "portal",
                expiries,
            )
        )
    return out
