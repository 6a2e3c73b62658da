"""What an operator inspects: rejected payloads and dead letters (list, replay, purge)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar, cast

import structlog

from worker.errors import InvalidInput
from worker.ops.redaction import redact
from worker.runtime import Runtime
from worker.store.keys import Group

MAX_PAYLOAD_CHARS = 2000
T = TypeVar("T")
log = structlog.stdlib.get_logger("worker.ops.records")


def validated(
    rt: Runtime, task: str, validate: Callable[[dict[str, Any]], T], payload: dict[str, Any]
) -> T:
    """`validate(payload)`; a rejection is recorded for the operator, logged, and re-raised."""
    try:
        return validate(payload)
    except InvalidInput as exc:
        reject(rt, task, exc, payload)
        log.warning("payload rejected", task=task, error=str(exc))
        raise


def reject(rt: Runtime, task: str, error: InvalidInput, payload: Any) -> None:
    """Keep a rejected payload (secrets masked, size capped) where the operator tools list it."""
    text = json.dumps(redact(payload), default=repr, ensure_ascii=False)
    record = {
        "task": task,
        "field": error.field,
        "rule": error.rule,
        "error": str(error),
        "payload": text[:MAX_PAYLOAD_CHARS],
        "truncated": len(text) > MAX_PAYLOAD_CHARS,
        "at": rt.buffer.server_time(),
    }
    keys = rt.buffer.keys
    pipe = rt.redis.pipeline(transaction=True)
    if rt.settings.rejected_keep:
        pipe.lpush(keys.rejected, json.dumps(record))
        pipe.ltrim(keys.rejected, 0, rt.settings.rejected_keep - 1)
    pipe.hincrby(keys.stats, "rejected", 1)
    pipe.execute()


def rejected(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    return [json.loads(r) for r in rt.redis.lrange(rt.buffer.keys.rejected, 0, limit - 1)]


def dead_letters(rt: Runtime, limit: int = 100, portal: str | None = None) -> list[dict[str, Any]]:
    """Oldest first; each with its group, element, error code, attempts and timestamps."""
    keys = rt.buffer.keys
    out: list[dict[str, Any]] = []
    for start in range(0, 1 << 62, 500):
        ids = cast(list[bytes], rt.redis.zrange(keys.dead, start, start + 499))
        if not ids:
            break
        for raw in rt.redis.hmget(keys.dead_data, ids):
            if raw is None:
                continue
            record = json.loads(raw)
            record["element"] = json.loads(record["element"]) if record.get("element") else None
            if portal is None or record["group"].startswith(f"{portal}:"):
                out.append(record)
                if len(out) >= limit:
                    return out
    return out


def replay(rt: Runtime, ids: list[str] | None = None, portal: str | None = None) -> int:
    """Put dead letters back into their groups (fresh attempts) and drop them from the list."""
    records = dead_letters(rt, limit=1 << 30, portal=portal)
    chosen = [r for r in records if ids is None or r["id"] in ids]
    for record in chosen:
        if record["element"] is not None:
            group = Group.parse(record["group"])
            ingested = rt.buffer.ingest(group, record["message_id"], record["element"])
            rt.send_flush(group, ingested.trigger)
        _drop(rt, record["id"])
    return len(chosen)


def purge(rt: Runtime, ids: list[str] | None = None, portal: str | None = None) -> int:
    chosen = [
        r["id"]
        for r in dead_letters(rt, limit=1 << 30, portal=portal)
        if ids is None or r["id"] in ids
    ]
    for dead_id in chosen:
        _drop(rt, dead_id)
    return len(chosen)


def _drop(rt: Runtime, dead_id: str) -> None:
    keys = rt.buffer.keys
    pipe = rt.redis.pipeline(transaction=True)
    pipe.zrem(keys.dead, dead_id)
    pipe.hdel(keys.dead_data, dead_id)
    pipe.execute()
