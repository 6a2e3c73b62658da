"""Parkings: a portal, or one connector of a portal, held back until someone acts.

A portal is parked in its hash (`blocked_until`, `block_reason`, `block_description`,
`blocked_at`): until `portal.register` or the operator's unpark when `blocked_until` is the
scripts' PARKED, or for a while (OVERLOAD_LIMIT, PORTAL_DELETED). A connector of a portal is parked
in the same hash under `cpark:<connector>` (a JSON record with reason, description and time):
that portal's groups of that connector wait, its other connectors go on. Parked items stay in
their groups and are counted; nothing is dead-lettered for a parking.

Backoffs of the rate budget (QUERY_LIMIT_EXCEEDED, OPERATION_TIME_LIMIT) and of a portal that could
not reach its OAuth server (CONNECTION_ERROR) share the portal fields but are waits, not parkings:
they are not listed here. A CONNECTION_ERROR parking with no end is listed: the release before
this one parked a portal so (an unknown 401) until someone unparks it. A portal with pending
confirmations but no registration is listed (reason `unregistered`, as the exporter counts it):
its groups wait for portal.register.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from worker.flush.policy import OWN_CODES, Outcome
from worker.store.clock import server_time
from worker.store.keys import Group, Keys, text
from worker.store.scripts import PARKED

CONNECTOR_PREFIX = "cpark:"
#: portal waits that are backoffs, not parkings (when they have an end): the rate budget's, an
#: OAuth server the portal could not reach, and the backoff after a rule-breaking answer (the
#: portal is parked, with no end, once they are DELIVERY_MAX_BAD_ANSWERS in a row)
BACKOFF_REASONS = frozenset(
    {
        "QUERY_LIMIT_EXCEEDED",
        "OPERATION_TIME_LIMIT",
        "CONNECTION_ERROR",
        *(code for code, (outcome, _) in OWN_CODES.items() if outcome is Outcome.BAD_ANSWER),
    }
)
#: the reason shown for a portal that has pending confirmations but no registration
UNREGISTERED = "unregistered"
PORTAL_FIELDS = ("blocked_until", "block_reason", "block_description", "blocked_at")


def connector_field(connector: str) -> str:
    return CONNECTOR_PREFIX + connector


def _groups(redis: Redis, keys: Keys, portal: str, connector: str | None) -> list[Group]:
    groups = [Group.parse(text(g)) for g in redis.smembers(keys.groups(portal))]
    return [g for g in groups if connector is None or g.connector == connector]


def _pending(redis: Redis, keys: Keys, groups: list[Group]) -> int:
    pipe = redis.pipeline(transaction=False)
    for group in groups:
        pipe.zcard(keys.queue(group))
        pipe.zcard(keys.leased(group))
    return sum(int(n) for n in pipe.execute())


def portal_parking(fields: dict[str, str], now: float) -> dict[str, Any] | None:
    """The portal's parking from its hash fields, or None when it is not parked."""
    until = float(fields.get("blocked_until") or 0)
    reason = fields.get("block_reason", "")
    if until <= now or (reason in BACKOFF_REASONS and until < PARKED):
        return None
    return {
        "reason": reason,
        "description": fields.get("block_description", ""),
        "since": float(fields["blocked_at"]) if fields.get("blocked_at") else None,
        "until": "portal.register or unpark" if until >= PARKED else until,
    }


def _unregistered(redis: Redis, keys: Keys, registered: set[str]) -> list[dict[str, Any]]:
    """Portals whose groups hold items (the due index has every such group) but which have no
    registration: nothing can be sent for them until portal.register."""
    waiting: dict[str, list[Group]] = {}
    for member, _ in redis.zscan_iter(keys.due):
        group = Group.parse(text(member))
        if group.portal not in registered:
            waiting.setdefault(group.portal, []).append(group)
    out: list[dict[str, Any]] = []
    for portal, groups in sorted(waiting.items()):
        pending = _pending(redis, keys, groups)
        if not pending:
            continue
        pipe = redis.pipeline(transaction=False)
        for group in groups:
            pipe.zrange(keys.queue(group), 0, 0, withscores=True)
        firsts = [float(reply[0][1]) for reply in pipe.execute() if reply]
        out.append(
            {
                "portal": portal,
                "connector": None,
                "reason": UNREGISTERED,
                "description": "confirmations wait for the portal's first portal.register",
                "since": min(firsts) if firsts else None,
                "until": "portal.register",
                "pending": pending,
            }
        )
    return out


def list_parked(redis: Redis, keys: Keys, now: float | None = None) -> list[dict[str, Any]]:
    """Every parking, portal-wide and per connector, with its reason and pending items; then the
    portals that have pending items but no registration."""
    now = server_time(redis) if now is None else now  # parkings are stored on Redis time
    out: list[dict[str, Any]] = []
    registered = {text(m) for m in redis.smembers(keys.portals)}
    for portal in sorted(registered):
        fields = {text(k): text(v) for k, v in redis.hgetall(keys.portal(portal)).items()}
        parking = portal_parking(fields, now)
        if parking is not None:
            groups = _groups(redis, keys, portal, None)
            out.append({"portal": portal, "connector": None, **parking})
            out[-1]["pending"] = _pending(redis, keys, groups)
        for name, raw in sorted(fields.items()):
            if not name.startswith(CONNECTOR_PREFIX):
                continue
            connector = name[len(CONNECTOR_PREFIX) :]
            record = json.loads(raw)
            groups = _groups(redis, keys, portal, connector)
            out.append(
                {
                    "portal": portal,
                    "connector": connector,
                    "reason": record.get("reason", ""),
                    "description": record.get("description", ""),
                    "since": record.get("at"),
                    "until": "portal.register or unpark",
                    "pending": _pending(redis, keys, groups),
                }
            )
    return out + _unregistered(redis, keys, registered)


def unpark(redis: Redis, keys: Keys, portal: str, connector: str | None = None) -> int:
    """Lift a parking (the portal's, or one connector's) and make its groups due now.

    Returns the groups resumed; 0 when the portal is unknown."""
    key = keys.portal(portal)
    if not redis.exists(key):
        return 0
    if connector is None:
        # the operator's word clears the portal's rule-breaking answers too (portal.register,
        # which a hostile portal can send, keeps them: one more parks it again at once)
        redis.hdel(key, *PORTAL_FIELDS, "refused_refreshed", "probe", "throttles", "bad_answers")
    else:
        redis.hdel(key, connector_field(connector))
    groups = _groups(redis, keys, portal, connector)
    if groups:
        redis.zadd(keys.due, dict.fromkeys((g.id for g in groups), server_time(redis)))
    return len(groups)


def connector_fields(redis: Redis, keys: Keys, portal: str) -> list[str]:
    """The portal's connector parking fields (portal.register lifts them all)."""
    return [
        text(f) for f in redis.hkeys(keys.portal(portal)) if text(f).startswith(CONNECTOR_PREFIX)
    ]
