"""`parked` and `unpark`: portals the fleet stopped calling, and letting them go again.

A portal is parked when its hash holds `blocked_until` (and `block_reason`): OVERLOAD_LIMIT,
access the app lost, or a throttle that lasted. `unpark` clears exactly what a new
registration clears of the parking (keeping the tokens) and makes the portal's groups due now,
so the sweep hands them to the workers at once.
"""

from __future__ import annotations

import argparse

from worker.cli.common import Subparsers, connect, emit, keys, known_portal, settings

#: what a parked portal's line shows
PARKED_FIELDS = ("blocked_until", "block_reason", "throttles", "domain")
#: the parking state in a portal's hash (its tokens and version stay)
PARKING_FIELDS = ("blocked_until", "block_reason", "throttles")


def register(sub: Subparsers) -> None:
    parked = sub.add_parser(
        "parked",
        help="portals the fleet stopped calling, until when and why",
        description=(
            "One JSON line per parked portal: member_id, blocked_until (Unix seconds; "
            "'until registered' when it waits for new tokens), block_reason, throttles."
        ),
    )
    parked.set_defaults(handler=_parked)
    unpark = sub.add_parser(
        "unpark",
        help="clear a portal's parking and make its groups due now",
        description=(
            "Clear PORTAL's parking (blocked_until, block_reason, its throttle count) and make "
            "its groups due now. Its tokens stay: a portal parked for lost access needs "
            "`register` with new tokens instead."
        ),
    )
    unpark.add_argument("portal", metavar="PORTAL", help="the portal's member_id")
    unpark.set_defaults(handler=_unpark)


def _parked(args: argparse.Namespace) -> int:
    from worker.clock import server_time
    from worker.keys import text
    from worker.scripts import PARKED

    s = settings()
    client, k = connect(s), keys(s)
    now = server_time(client)  # blocked_until is stored on Redis time
    for member in sorted(text(m) for m in client.smembers(k.portals)):
        values = client.hmget(k.portal(member), list(PARKED_FIELDS))
        found = {f: text(v) for f, v in zip(PARKED_FIELDS, values, strict=True) if v is not None}
        until = float(found.get("blocked_until", 0) or 0)
        if until <= now and "block_reason" not in found:
            continue
        if until >= PARKED:
            found["blocked_until"] = "until registered"
        emit({"member_id": member, **found})
    return 0


def _unpark(args: argparse.Namespace) -> int:
    from worker.clock import server_time
    from worker.keys import text

    s = settings()
    client, k = connect(s), keys(s)
    known_portal(client, k, args.portal)
    groups = [text(g) for g in client.smembers(k.groups(args.portal))]
    now = server_time(client)
    pipe = client.pipeline(transaction=True)
    pipe.hdel(k.portal(args.portal), *PARKING_FIELDS)
    if groups:
        pipe.zadd(k.due, dict.fromkeys(groups, now))
    cleared, *_ = pipe.execute()
    emit({"portal": args.portal, "cleared": bool(cleared), "groups_due": len(groups)})
    return 0
