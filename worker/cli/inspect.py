"""`stats`, `portals`, `rejected`: read-only views of the fleet's state in Redis."""

from __future__ import annotations

import argparse
import json

from worker.cli.common import Subparsers, connect, emit, keys, settings

#: what `portals` shows of a portal's hash (never its tokens)
PORTAL_FIELDS = (
    "member_id",
    "domain",
    "client_endpoint",
    "server_endpoint",
    "token_owner",
    "version",
    "source",
    "expires_at",
    "blocked_until",
    "block_reason",
    "block_description",
    "rate_per_s",
    "rate_burst",
    "throttles",
    "packing",
    "packing_off_at",
    "packing_off_reason",
)


def register(sub: Subparsers) -> None:
    stats = sub.add_parser(
        "stats",
        help="fleet-wide counters, groups due, dead letters kept",
        description="Fleet-wide counters (one JSON object), groups due and dead letters kept.",
    )
    stats.set_defaults(handler=_stats)
    portals = sub.add_parser(
        "portals",
        help="registered portals: endpoint, token version, parking, packing (no tokens)",
        description="One JSON line per registered portal; tokens are never shown.",
    )
    portals.set_defaults(handler=_portals)
    rejected = sub.add_parser(
        "rejected",
        help="the newest rejected payloads, with field and rule",
        description="The newest rejected payloads (secrets masked), newest first.",
    )
    rejected.add_argument("--limit", type=_positive, default=20, help="at most N (default 20)")
    rejected.set_defaults(handler=_rejected)


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {raw!r}")
    return value


def number(raw: str) -> int | float | str:
    """A stats hash value as a JSON number (counters are integers, sums may be fractions); a
    value that is not a number stays as it is."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def _stats(args: argparse.Namespace) -> int:
    from worker.store.keys import text

    s = settings()
    client, k = connect(s), keys(s)
    raw = {text(key): text(value) for key, value in client.hgetall(k.stats).items()}
    counters: dict[str, int | float | str] = {
        key: number(value) for key, value in sorted(raw.items()) if "_bucket:" not in key
    }
    counters["dead_letters_kept"] = int(client.zcard(k.dead))
    counters["groups_due"] = int(client.zcard(k.due))
    emit(counters)
    return 0


def _portals(args: argparse.Namespace) -> int:
    from worker.store.keys import text

    s = settings()
    client, k = connect(s), keys(s)
    for member in sorted(text(m) for m in client.smembers(k.portals)):
        values = client.hmget(k.portal(member), list(PORTAL_FIELDS))
        emit({f: text(v) for f, v in zip(PORTAL_FIELDS, values, strict=True) if v is not None})
    return 0


def _rejected(args: argparse.Namespace) -> int:
    s = settings()
    client, k = connect(s), keys(s)
    for raw in client.lrange(k.rejected, 0, args.limit - 1):
        emit(json.loads(raw))
    return 0
