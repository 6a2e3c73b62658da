"""`delivery.confirm_many`: many confirmations in one message, each judged on its own.

The envelope is checked first (an object with one field, `confirmations`, an array of at most
DELIVERY_CONFIRM_MANY_MAX elements): breaking that rejects the message whole. Then each element is
validated as `delivery.confirm` validates its payload; a bad one is rejected under its index
(`confirmations[3].line`) and the others go on. The valid ones are ingested with one script call
per group (`lua/ingest_many.lua`), in arrival order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from worker.errors import InvalidInput
from worker.keys import Group
from worker.names import CONFIRM_MANY_TASK
from worker.perprocess import per_process
from worker.records import reject
from worker.runtime import Runtime
from worker.scripts import Bound, script
from worker.triggers import Trigger, new_task_id
from worker.validation import Confirmation, confirmation

FIELD = "confirmations"


@dataclass(frozen=True)
class Judged:
    """The valid confirmations, and each bad element with its index and why."""

    valid: list[Confirmation] = field(default_factory=list)
    invalid: list[tuple[int, InvalidInput, Any]] = field(default_factory=list)


def judge(payload: dict[str, Any], limit: int) -> Judged:
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
            judged.valid.append(confirmation(item))
        except InvalidInput as exc:
            named = exc if exc.field == where else InvalidInput(f"{where}.{exc.field}", exc.rule)
            judged.invalid.append((index, named, item))
    return judged


@dataclass(frozen=True)
class IngestedMany:
    added: int
    coalesced: int
    trigger: Trigger


def _script(rt: Runtime) -> Bound:
    return per_process(("ingest_many", id(rt.redis)), lambda: script(rt.redis, "ingest_many"))


def ingest_group(rt: Runtime, group: Group, items: list[Confirmation]) -> IngestedMany:
    """One script call: add `items` (all of `group`) to the group's buffer."""
    task_id = new_task_id()
    b, s = rt.buffer, rt.settings
    pairs = [[c.message_id, json.dumps(c.element, separators=(",", ":"))] for c in items]
    bound: Bound = per_process(
        ("ingest_many", id(rt.redis)), lambda: script(rt.redis, "ingest_many")
    )
    reply = bound(
        b.keys.group_keys(group),
        {
            "group_id": group.id,
            "items_json": json.dumps(pairs, separators=(",", ":")),
            "batch_size": s.batch_size,
            "window_s": s.flush_window_s,
            "task_id": task_id,
            "max_countdown_s": s.max_countdown_s,
            "grace_s": b.grace_s,
        },
    )
    trigger = reply["trigger"]
    return IngestedMany(
        int(reply["added"]),
        int(reply["coalesced"]),
        Trigger.from_script(task_id, trigger["send"], trigger["delay_ms"]),
    )


def ingest(rt: Runtime, judged: Judged) -> dict[str, int]:
    """Record the bad elements for the operator; ingest the good ones, one call per group."""
    for _, error, item in judged.invalid:
        reject(rt, CONFIRM_MANY_TASK, error, item)
    groups: dict[Group, list[Confirmation]] = {}
    for item in judged.valid:
        groups.setdefault(item.group, []).append(item)
    added = coalesced = 0
    for group, items in groups.items():
        done = ingest_group(rt, group, items)
        rt.send_flush(group, done.trigger)
        added, coalesced = added + done.added, coalesced + done.coalesced
    return {"added": added, "coalesced": coalesced, "rejected": len(judged.invalid)}
