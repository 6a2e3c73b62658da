"""`unconfirmed`: a portal's kept `delivery.sent` records that no receipt confirmed yet."""

from __future__ import annotations

import argparse
import json
import re

from worker.cli.common import Subparsers, UserError, connect, emit, keys, settings

_PORTAL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def register(sub: Subparsers) -> None:
    unconfirmed = sub.add_parser(
        "unconfirmed",
        help="a portal's delivery.sent records never confirmed by a receipt, oldest first",
        description=(
            "One JSON line per kept delivery.sent record of PORTAL that no delivery.delivered "
            "confirmed yet, oldest first: its Bitrix24 ids, external ids and age. A record "
            "stays for DELIVERY_SENT_TTL_S from its sent."
        ),
    )
    unconfirmed.add_argument("portal", metavar="PORTAL", help="the portal's member_id")
    unconfirmed.add_argument("--limit", type=_positive, default=100, help="at most N (100)")
    unconfirmed.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="only records sent at least this long ago (default 0)",
    )
    unconfirmed.set_defaults(handler=_unconfirmed)


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {raw!r}")
    return int(raw)


def _unconfirmed(args: argparse.Namespace) -> int:
    from worker.store.clock import server_time
    from worker.store.keys import text

    if not _PORTAL.fullmatch(args.portal):
        raise UserError(
            f"PORTAL must be a member_id (letters, digits, '_', '-', '.'): {args.portal!r}"
        )
    s = settings()
    client, k = connect(s), keys(s)
    names = k.receipt_keys(args.portal)
    now = server_time(client)
    found: list[tuple[bytes, float]] = client.zrangebyscore(  # type: ignore[assignment]
        names["open_key"], "-inf", now - args.older_than, 0, args.limit, withscores=True
    )
    if not found:
        return 0
    records = client.hmget(names["records_key"], [m for m, _ in found])
    for (member, sent_at), raw in zip(found, records, strict=True):
        if raw is None:
            continue
        record = json.loads(raw)
        element = json.loads(record["el"]) if record.get("el") else {}
        emit(
            {
                "record": text(member),
                "connector": record.get("c"),
                "line": int(record["line"]) if record.get("line") else None,
                "im": element.get("im"),
                "external_ids": element.get("message", {}).get("id"),
                "chat": element.get("chat", {}).get("id"),
                "sent_at": float(sent_at),
                "age_s": round(max(0.0, now - float(sent_at)), 3),
            }
        )
    return 0
