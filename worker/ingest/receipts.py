"""Confirm by the external id: `delivery.sent` keeps a message's Bitrix24 ids, `delivery.delivered`
turns a receipt into the confirmation `delivery.confirm` would have ingested.

Records live in Redis under the portal's hash tag (worker/store/keys.py `receipt_keys`); every
state change is one script (`sent.lua`, `receipt.lua`, `receipt_ingested.lua`,
`receipts_sweep.lua`). A record goes 0 (kept) -> 1 (confirmed, its confirmation being ingested)
-> 2 (ingested: small, kept until its TTL so a repeated receipt is deduplicated). A receipt whose
`sent` has not arrived waits in Redis (no Celery countdown): the `sent` completes it atomically,
or the sweep rejects it after DELIVERY_RECEIPT_WAIT_S. docs/receipts.md tells the story.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import structlog

from worker.errors import InvalidInput
from worker.ingest.receipt_payloads import Receipt, Sent, connector_key
from worker.names import DELIVERED_TASK, SENT_TASK
from worker.ops.records import reject
from worker.perprocess import per_process
from worker.runtime import Runtime
from worker.store.keys import Group
from worker.store.scripts import Bound, script

log = structlog.stdlib.get_logger("worker.ingest.receipts")
#: portals the sweep visits per run, and records / receipts it handles per portal
SWEEP_PORTALS = 50
SWEEP_LIMIT = 500


def _script(rt: Runtime, name: str) -> Bound:
    return per_process((name, id(rt.redis)), lambda: script(rt.redis, name))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def id_field(connector: str, chat: str | None, external_id: str) -> str:
    """The field an external id is kept under, `<connector>:<len(chat)>:<chat>:<id>`:
    unambiguous whatever the chat and the id hold (a connector id has no `:`)."""
    chat = chat or ""
    return f"{connector_key(connector)}:{len(chat)}:{chat}:{external_id}"


def external_id(field: str) -> str:
    """The external id of an `id_field`."""
    _, length, rest = field.split(":", 2)
    return rest[int(length) + 1 :]


def record_id(connector: str, im_message_id: int) -> str:
    return f"{connector_key(connector)}:{im_message_id}"


@dataclass(frozen=True)
class Outcome:
    """What a task did: its kind (`kept`, `confirmed`, `repeat` for `sent`; counts by outcome
    for `delivered`); and, with DELIVERY_REPLICA_ACKS, whether the replicas asked for
    acknowledged its writes (the task runs again when they did not, as `delivery.confirm`)."""

    kind: str
    counts: dict[str, int] = field(default_factory=dict)
    replicated: bool = True


def _ingest(rt: Runtime, confirms: list[dict[str, Any]]) -> tuple[dict[str, int], bool]:
    """Ingest each confirmed record's confirmation as `delivery.confirm` does, then mark the
    records ingested (a crash between the two runs the ingest again: coalesced); the counts,
    and whether every ingest was replicated."""
    counts: dict[str, int] = {}
    done: list[str] = []
    replicated = True
    for confirm in confirms:
        element = json.loads(confirm["el"])
        element["message"] = {**element.get("message", {}), "date": int(confirm["date"])}
        portal = confirm["portal"]
        group = Group(portal, confirm["c"], int(confirm["line"]))
        im_id = str(element["im"]["message_id"])
        ingested = rt.buffer.ingest(group, im_id, element)
        rt.send_flush(group, ingested.trigger)
        counts[ingested.kind] = counts.get(ingested.kind, 0) + 1
        replicated = replicated and ingested.replicated
        done.append(confirm["id"])
    if done:
        keys = rt.buffer.keys.receipt_keys(confirms[0]["portal"])
        _script(rt, "receipt_ingested")(keys, {"record_ids_json": json.dumps(done)})
    return counts, replicated


def record_sent(rt: Runtime, item: Sent, payload: dict[str, Any]) -> Outcome:
    """Keep the record (or complete a receipt that waited for it); a refusal is recorded in
    `rejected` with its reason and raised."""
    s = rt.settings
    rid = record_id(item.connector, int(item.element["im"]["message_id"]))
    fields = [id_field(item.connector, item.chat, i) for i in item.external_ids]
    reply, replicated = rt.buffer.run_acked(
        _script(rt, "sent"),
        rt.buffer.keys.receipt_keys(item.portal),
        {
            "member_id": item.portal,
            "record_id": rid,
            "fields_json": _compact(fields),
            "el_json": _compact(item.element),
            "line": item.line,
            "connector": item.connector,
            "ttl_s": s.sent_ttl_s,
            "max_records": s.sent_max_per_portal,
        },
    )
    kind = reply["kind"]
    error = None
    if kind == "conflict":
        error = InvalidInput(
            "message.id",
            f"differs from the external ids already kept for im.message_id "
            f"{item.element['im']['message_id']} (a second delivery.sent with other ids)",
        )
    elif kind == "taken":
        external = external_id(reply["field"])
        error = InvalidInput(
            "message.id",
            f"{external!r} is already kept for another Bitrix24 message "
            f"({reply['other']}: connector:im.message_id)",
        )
    elif kind == "full":
        error = InvalidInput(
            "portal",
            f"already holds DELIVERY_SENT_MAX_PER_PORTAL ({s.sent_max_per_portal}) kept "
            "delivery.sent records; this one is not kept",
        )
    if error is not None:
        reject(rt, SENT_TASK, error, payload)
        log.warning("delivery.sent rejected", portal=item.portal, error=str(error))
        raise error
    if kind == "confirm":
        confirm = {**reply, "id": rid, "portal": item.portal, "c": item.connector}
        counts, ingested = _ingest(rt, [{**confirm, "line": item.line}])
        return Outcome("confirmed", counts, replicated and ingested)
    return Outcome(kind, replicated=replicated)


def receive(rt: Runtime, item: Receipt, payload: dict[str, Any]) -> Outcome:
    """Confirm each kept record the receipt names (one confirmation per record); the ids with
    no record yet wait for their `sent` up to DELIVERY_RECEIPT_WAIT_S."""
    fields = [id_field(item.connector, item.chat, i) for i in item.external_ids]
    waiting = _compact({"date": item.date, "payload": payload})
    reply, replicated = rt.buffer.run_acked(
        _script(rt, "receipt"),
        rt.buffer.keys.receipt_keys(item.portal),
        {
            "member_id": item.portal,
            "fields_json": _compact(fields),
            "receipt_json": waiting,
            "date": item.date,
            "wait_s": rt.settings.receipt_wait_s,
        },
    )
    found = reply.get("confirm")  # an empty array comes back from cjson as {}
    confirms = [{**c, "portal": item.portal} for c in found] if isinstance(found, list) else []
    counts: dict[str, int] = {}
    for outcome in reply["outcomes"]:
        counts[outcome] = counts.get(outcome, 0) + 1
    ingest_counts, ingested = _ingest(rt, confirms)
    for kind, n in ingest_counts.items():
        counts[f"ingest_{kind}"] = n
    return Outcome("received", counts, replicated and ingested)


def sweep(rt: Runtime) -> dict[str, int]:
    """Beat's share (run by `delivery.sweep`): expire records past DELIVERY_SENT_TTL_S (those
    never confirmed counted and logged), reject receipts that waited in vain."""
    keys = rt.buffer.keys
    now = rt.buffer.server_time()
    due = [
        m.decode() if isinstance(m, bytes) else str(m)
        for m in rt.redis.zrangebyscore(keys.receipts_due, "-inf", now, 0, SWEEP_PORTALS)
    ]
    totals = {"expired": 0, "expired_unconfirmed": 0, "unmatched": 0}
    for portal in due:
        reply = _script(rt, "receipts_sweep")(
            keys.receipt_keys(portal),
            {"member_id": portal, "ttl_s": rt.settings.sent_ttl_s, "limit": SWEEP_LIMIT},
        )
        unconfirmed = reply.get("unconfirmed") or []
        totals["expired"] += int(reply["expired"])
        totals["expired_unconfirmed"] += len(unconfirmed)
        if unconfirmed:
            log.warning(
                "delivery.sent records expired unconfirmed",
                portal=portal,
                count=len(unconfirmed),
                records=unconfirmed[:20],
            )
        for raw, id_field_ in zip(
            reply.get("late") or [], reply.get("late_fields") or [], strict=True
        ):
            _reject_late(rt, json.loads(raw), external_id(id_field_))
            totals["unmatched"] += 1
    return totals


def _reject_late(rt: Runtime, waited: dict[str, Any], external: str) -> None:
    payload = waited.get("payload", {})
    wait = rt.settings.receipt_wait_s
    error = InvalidInput(
        "message_id",
        f"{external!r} has no delivery.sent record (none arrived within "
        f"DELIVERY_RECEIPT_WAIT_S = {wait:g} s); nothing was sent to the portal",
    )
    reject(rt, DELIVERED_TASK, error, payload)
    log.warning("delivery.delivered rejected", portal=payload.get("portal"), error=str(error))
