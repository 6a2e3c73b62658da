"""Confirmations without `message.id`: accepted, counted, and warned about once per group.

The method's spec makes `message` optional, so they are accepted. But the portal's handler
(imopenlines `onReceivedStatusDelivery`) stores `message.id` as the message's external id
(`CONNECTOR_MID`), which its later update and delete events carry, and an older version did
nothing at all without it (docs/bitrix24.md). So each one is counted (`without_message_id` in
`b24-delivery stats` and the exporter), and one warning per group is logged, again at most once
a day (a flag key with expiry, not a line per item). DELIVERY_REQUIRE_MESSAGE_ID=1 refuses them
at ingest instead (worker/ingest/validation.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from worker.ingest.validation import Confirmation
from worker.runtime import Runtime
from worker.store.keys import Group

log = structlog.stdlib.get_logger("worker.ingest.message_id")

COUNTER = "without_message_id"
#: a group's warning is logged again after this long
WARN_EVERY_S = 86_400


def note_missing(rt: Runtime, items: Iterable[Confirmation]) -> int:
    """Count the confirmations without `message.id` and warn once per group; returns the count."""
    missing: dict[Group, int] = {}
    for item in items:
        if not item.has_message_id:
            missing[item.group] = missing.get(item.group, 0) + 1
    if not missing:
        return 0
    keys = rt.buffer.keys
    pipe = rt.redis.pipeline(transaction=False)
    pipe.hincrby(keys.stats, COUNTER, sum(missing.values()))
    for group in missing:
        pipe.set(keys.warned_without_message_id(group), "1", nx=True, ex=WARN_EVERY_S)
    first_time = pipe.execute()[1:]
    for (group, count), first in zip(missing.items(), first_time, strict=True):
        if first:
            log.warning(
                "confirmations without message.id: the portal cannot store the external id",
                portal=group.portal,
                connector=group.connector,
                line=group.line,
                count=count,
                hint="send message.id, or refuse them with DELIVERY_REQUIRE_MESSAGE_ID=1",
            )
    return sum(missing.values())
