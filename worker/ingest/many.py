"""`delivery.confirm_many`: many confirmations in one message, each judged on its own.

The envelope is checked first (an object with one field, `confirmations`, an array of at most
DELIVERY_CONFIRM_MANY_MAX elements): breaking that rejects the message whole. Then each element is
validated as `delivery.confirm` validates its payload; a bad one is rejected under its index
(`confirmations[3].line`) and the others go on. The valid ones are ingested with one script call
per group (`lua/ingest_many.lua`), in arrival order, all in one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.errors import InvalidInput
from worker.ingest.validation import Confirmation, confirmation
from worker.names import CONFIRM_MANY_TASK
from worker.ops.records import reject
from worker.runtime import Runtime
from worker.store.keys import Group
from worker.store.kinds import Added

FIELD = "confirmations"


@dataclass(frozen=True)
class Judged:
    """The valid confirmations, and each bad element with its index and why."""

    valid: list[Confirmation] = field(default_factory=list)
    invalid: list[tuple[int, InvalidInput, Any]] = field(default_factory=list)


def judge(payload: dict[str, Any], limit: int, *, require_message_id: bool = False) -> Judged:
    """Check the envelope (raises InvalidInput for the whole message), then each element."""
    extra = sorted(str(k)[:40] for k in payload if k != FIELD)
    if extra:
        raise InvalidInput(extra[0], f"is not a known field (expected {FIELD})")
    if FIELD not in payload:
        raise InvalidInput(FIELD, "is required")
    items = payload[FIELD]
    if not isinstance(items, list):
        raise InvalidInput(FIELD, f"must be an array of at most {limit} confirmations")
    if len(items) > limit:
        raise InvalidInput(
            FIELD,
            f"must hold at most {limit} confirmations (DELIVERY_CONFIRM_MANY_MAX); "
            f"got {len(items)}",
        )
    judged = Judged()
    for index, item in enumerate(items):
        where = f"{FIELD}[{index}]"
        try:
            if not isinstance(item, dict):
                raise InvalidInput(where, "must be an object")
            judged.valid.append(confirmation(item, require_message_id=require_message_id))
        except InvalidInput as exc:
            named = exc if exc.field == where else InvalidInput(f"{where}.{exc.field}", exc.rule)
            judged.invalid.append((index, named, item))
    return judged


@dataclass(frozen=True)
class ManyIngested:
    """What a message's ingest did, and whether the replicas asked for acknowledged it."""

    counts: dict[str, int]
    replicated: bool


def ingest(rt: Runtime, judged: Judged, *, record_rejected: bool = True) -> ManyIngested:
    """Record the bad elements for the operator; ingest the good ones, one script call per
    group, all in one round trip (then WAIT for DELIVERY_REPLICA_ACKS replicas, when set)."""
    if record_rejected:
        for _, error, item in judged.invalid:
            reject(rt, CONFIRM_MANY_TASK, error, item)
    groups: dict[Group, list[tuple[str, dict[str, Any]]]] = {}
    for item in judged.valid:
        groups.setdefault(item.group, []).append((item.message_id, item.element))
    done, replicated = rt.buffer.ingest_many(groups)
    counts = {kind.value: 0 for kind in Added}
    for group in done:
        rt.send_flush(group.group, group.trigger)
        for kind, n in group.counts.items():
            counts[kind.value] += n
    counts["rejected"] = len(judged.invalid)
    return ManyIngested(counts, replicated)
