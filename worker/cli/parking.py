"""`parked` and `unpark`: portals, and connectors of portals, the fleet stopped calling, and
letting them go again (worker/ops/parking.py keeps the records and does the work).

A portal is parked when its hash holds `blocked_until` and a `block_reason` that is not the
rate budget's own backoff: OVERLOAD_LIMIT, PORTAL_DELETED, access the app lost, a condition of
the portal, an address refused. One connector of a portal is parked by the portal's answers
about that connector (IMCONNECTOR_*). `unpark` clears the parking (keeping the tokens) and makes
the groups due now, so the sweep hands them to the workers at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from worker.cli.common import Subparsers, connect, emit, keys, known_portal, settings

#: what a portal that refused packed calls shows (its groups go one call each)
PACKING_FIELDS = ("packing_off_at", "packing_off_reason")


def register(sub: Subparsers) -> None:
    parked = sub.add_parser(
        "parked",
        help="portals and connectors the fleet stopped calling, until when and why",
        description=(
            "One JSON line per parking: member_id, connector (null: the whole portal), "
            "block_reason, description, since, blocked_until (Unix seconds; 'until registered' "
            "when it waits for portal.register or unpark), pending (items kept). A portal with "
            "pending confirmations but no registration is listed too, block_reason "
            "'unregistered' (they go out after its portal.register). Then one line "
            "per portal that refused packed calls: member_id, packing_off_at, "
            "packing_off_reason (its groups go one call each until a registration asks for "
            "packing again)."
        ),
    )
    parked.set_defaults(handler=_parked)
    unpark = sub.add_parser(
        "unpark",
        help="clear a portal's (or one connector's) parking and make its groups due now",
        description=(
            "Clear PORTAL's parking, or with --connector that connector's, and make the groups "
            "due now. Its tokens stay: a portal parked for lost access needs `register` with "
            "new tokens instead."
        ),
    )
    unpark.add_argument("portal", metavar="PORTAL", help="the portal's member_id")
    unpark.add_argument("--connector", help="lift only this connector's parking")
    unpark.set_defaults(handler=_unpark)


def _line(record: dict[str, Any]) -> dict[str, Any]:
    until = record["until"]
    return {
        "member_id": record["portal"],
        "connector": record["connector"],
        "block_reason": record["reason"],
        "description": record["description"],
        "since": record["since"],
        "blocked_until": "until registered" if isinstance(until, str) else until,
        "pending": record["pending"],
    }


def _parked(args: argparse.Namespace) -> int:
    from worker.ops.parking import list_parked
    from worker.store.keys import text

    s = settings()
    for record in list_parked(connect(s), keys(s)):
        emit(_line(record))
    client, k = connect(s), keys(s)
    for member in sorted(text(m) for m in client.smembers(k.portals)):
        values = client.hmget(k.portal(member), list(PACKING_FIELDS))
        if values[1] is not None:
            found = {f: text(v) for f, v in zip(PACKING_FIELDS, values, strict=True) if v}
            emit({"member_id": member, **found})
    return 0


def _unpark(args: argparse.Namespace) -> int:
    from worker.ops.parking import list_parked, unpark

    s = settings()
    client, k = connect(s), keys(s)
    known_portal(client, k, args.portal)
    cleared = any(
        p["portal"] == args.portal and p["connector"] == args.connector
        for p in list_parked(client, k)
    )
    groups = unpark(client, k, args.portal, args.connector)
    emit({"portal": args.portal, "cleared": cleared, "groups_due": groups})
    return 0
