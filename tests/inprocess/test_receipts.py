"""The receipt scripts' state machine in-process (docs/receipts.md): `sent` -> `delivered`,
the reverse order within the wait, repeats, conflicts, the cap, expiry, with shrunk time and
the real Redis; the confirmations land in the group's buffer as `delivery.confirm` puts them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.harness import rejected_records, stats, wait_for
from worker.errors import InvalidInput
from worker.ingest import receipt_payloads, receipts
from worker.runtime import Runtime
from worker.store.keys import Group, Keys

KEYS = Keys()
GROUP = Group("p1", "myconnector", 107)


def sent_payload(im_id: int, *ext: str, chat: str | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "portal": "p1",
        "connector": "myconnector",
        "line": 107,
        "im": {"chat_id": 323, "message_id": im_id},
        "message": {"id": list(ext)},
    }
    if chat is not None:
        payload["chat"] = {"id": chat}
    payload.update(extra)
    return payload


def receipt_payload(*ext: str, date: int = 1738065600, **extra: Any) -> dict[str, Any]:
    payload = {"portal": "p1", "connector": "myconnector", "message_id": list(ext), "date": date}
    payload.update(extra)
    return payload


def send(rt: Runtime, payload: dict[str, Any]) -> receipts.Outcome:
    return receipts.record_sent(rt, receipt_payloads.sent(payload), payload)


def deliver(rt: Runtime, payload: dict[str, Any]) -> receipts.Outcome:
    return receipts.receive(rt, receipt_payloads.receipt(payload), payload)


def pending(r: redis.Redis, group: Group = GROUP) -> dict[str, dict[str, Any]]:
    return {k.decode(): json.loads(v) for k, v in r.hgetall(KEYS.items(group)).items()}


def test_sent_then_delivered_ingests_the_records_ids(rt: Runtime, r: redis.Redis) -> None:
    assert send(rt, sent_payload(85911, "ext-1", "ext-1b", chat="c-1")).kind == "kept"
    assert pending(r) == {}, "a sent alone confirms nothing"
    got = deliver(rt, receipt_payload("ext-1b", chat={"id": "c-1"}))
    assert got.counts == {"matched": 1, "ingest_added": 1}
    assert pending(r)["85911"] == {
        "im": {"chat_id": 323, "message_id": 85911},
        "message": {"id": ["ext-1", "ext-1b"], "date": 1738065600},
        "chat": {"id": "c-1"},
    }, "message.id carries every id of the record, even when the receipt named one"
    again = deliver(rt, receipt_payload("ext-1", chat={"id": "c-1"}))
    assert again.counts == {"deduplicated": 1}, "a repeated receipt is deduplicated"
    assert stats(r)["receipts_deduplicated"] == 1 and stats(r)["ingested"] == 1


def test_ids_are_matched_within_their_chat_and_connector_as_the_portal_reads_it(
    rt: Runtime, r: redis.Redis
) -> None:
    send(rt, sent_payload(1, "7", chat="a"))
    send(rt, sent_payload(2, "7", chat="b"))  # per-chat numbering: the same id in two chats
    deliver(rt, receipt_payload("7", chat={"id": "b"}, connector="MyConnector.v2"))
    assert list(pending(r)) == ["2"]


def test_a_receipt_before_its_sent_waits_and_the_sent_completes_it(
    rt: Runtime, r: redis.Redis, sent: Any
) -> None:
    early = deliver(rt, receipt_payload("ext-9", date=1738000000))
    assert early.counts == {"waiting": 1} and pending(r) == {}
    done = send(rt, sent_payload(99, "ext-9"))
    assert done.kind == "confirmed" and done.counts == {"added": 1}
    assert pending(r)["99"]["message"] == {"id": ["ext-9"], "date": 1738000000}
    assert r.zcard(KEYS.receipt_keys("p1")["waiting_key"]) == 0
    assert receipts.sweep(rt)["unmatched"] == 0
    assert any(c.name.startswith("delivery.flush") for c in sent.calls), "its flush is due"


def test_a_receipt_that_never_gets_its_sent_is_rejected_after_the_wait(
    make_rt: Callable[..., Runtime], r: redis.Redis
) -> None:
    rt = make_rt(receipt_wait_s=0.2)
    deliver(rt, receipt_payload("lost-1", "lost-2"))
    assert receipts.sweep(rt)["unmatched"] == 0, "not before the wait"
    wait_for(lambda: receipts.sweep(rt)["unmatched"] == 2, 5, what="the wait to end")
    records = rejected_records(r)
    assert {rec["task"] for rec in records} == {"delivery.delivered"}
    assert any("'lost-1' has no delivery.sent record" in rec["error"] for rec in records)
    assert pending(r) == {} and r.zcard(KEYS.receipts_due) == 0
    send(rt, sent_payload(5, "lost-1"))
    assert pending(r) == {}, "a sent after the wait confirms nothing by itself"


def test_a_receipt_naming_several_records_gives_one_confirmation_each(
    rt: Runtime, r: redis.Redis
) -> None:
    send(rt, sent_payload(1, "a1", "a2"))
    send(rt, sent_payload(2, "b1"))
    got = deliver(rt, receipt_payload("a1", "a2", "b1", "unknown"))
    assert got.counts == {"matched": 3, "waiting": 1, "ingest_added": 2}
    assert sorted(pending(r)) == ["1", "2"]


def test_a_second_sent_with_other_bitrix24_ids_is_rejected(rt: Runtime, r: redis.Redis) -> None:
    send(rt, sent_payload(1, "x"))
    assert send(rt, sent_payload(1, "x")).kind == "repeat"
    with pytest.raises(InvalidInput, match="already kept for another Bitrix24 message"):
        send(rt, sent_payload(2, "x"))
    with pytest.raises(InvalidInput, match="differs from the external ids already kept"):
        send(rt, sent_payload(1, "y"))
    assert [rec["field"] for rec in rejected_records(r)] == ["message.id", "message.id"]


def test_past_the_cap_a_sent_is_rejected_and_counted(
    make_rt: Callable[..., Runtime], r: redis.Redis
) -> None:
    rt = make_rt(sent_max_per_portal=2)
    send(rt, sent_payload(1, "a"))
    send(rt, sent_payload(2, "b"))
    with pytest.raises(InvalidInput, match="DELIVERY_SENT_MAX_PER_PORTAL"):
        send(rt, sent_payload(3, "c"))
    assert stats(r)["sent_over_cap"] == 1 and rejected_records(r)[0]["field"] == "portal"


def test_records_expire_after_their_ttl_and_unconfirmed_ones_are_counted(
    make_rt: Callable[..., Runtime], r: redis.Redis
) -> None:
    rt = make_rt(sent_ttl_s=1)
    send(rt, sent_payload(1, "a"))
    send(rt, sent_payload(2, "b"))
    deliver(rt, receipt_payload("b"))
    wait_for(lambda: receipts.sweep(rt)["expired"] == 2, 10, what="records to expire")
    assert stats(r)["sent_expired_unconfirmed"] == 1 and stats(r)["sent_expired"] == 2
    keys = KEYS.receipt_keys("p1")
    for name in ("records_key", "ids_key", "kept_key", "open_key"):
        assert not r.exists(keys[name]), name
    assert r.zcard(KEYS.receipts_due) == 0, "the portal leaves the sweep's index"


def test_a_confirmed_record_shrinks(rt: Runtime, r: redis.Redis) -> None:
    send(rt, sent_payload(1, "a", chat="c"))
    records = KEYS.receipt_keys("p1")["records_key"]
    before = len(r.hget(records, "myconnector:1") or b"")
    deliver(rt, receipt_payload("a", chat={"id": "c"}))
    after = json.loads(r.hget(records, "myconnector:1") or b"{}")
    assert after["s"] == 2 and "el" not in after and len(json.dumps(after)) < before


def test_both_tasks_requeue_themselves_when_redis_is_unreachable(
    settings: Any, sent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import Reject

    from devtools.redis_local import free_port
    from tasks import receipts as tasks

    down = redis.Redis(port=free_port(), socket_connect_timeout=1)
    monkeypatch.setattr(tasks, "runtime", lambda: Runtime.create(settings, sent, client=down))
    for task, payload in (
        (tasks.sent, sent_payload(1, "a")),
        (tasks.delivered, receipt_payload("a")),
    ):
        with pytest.raises(Reject) as err:
            task.run(**payload)
        assert err.value.requeue, task.name


#: the bytes a kept record may take (docs/receipts.md, "Capacity", quotes the measured figures)
MAX_BYTES_KEPT, MAX_BYTES_CONFIRMED = 800, 500


def test_memory_per_kept_record(rt: Runtime, r: redis.Redis) -> None:
    """MEMORY USAGE (every element counted) of a portal's receipt keys over 5000 records shaped
    as a real connector's: one 36-character external id, a chat id, 9-digit Bitrix24 ids."""
    n, keys = 5000, KEYS.receipt_keys("p1")
    names = ("records_key", "ids_key", "kept_key", "open_key")

    def used() -> int:
        return sum(int(r.memory_usage(keys[k], samples=0) or 0) for k in names)

    for i in range(n):
        ext = f"{i:08d}-7f3a-4c1e-9b2d-5e6f7a8b9c0d"
        send(rt, sent_payload(300_000_000 + i, ext, chat=f"{100_000_000 + i}"))
    kept = used() / n
    for i in range(n):
        ext = f"{i:08d}-7f3a-4c1e-9b2d-5e6f7a8b9c0d"
        deliver(rt, receipt_payload(ext, chat={"id": f"{100_000_000 + i}"}))
    confirmed = used() / n
    print(f"\n[receipts memory] kept {kept:.0f} B/record, confirmed {confirmed:.0f} B/record")
    assert kept <= MAX_BYTES_KEPT and confirmed <= MAX_BYTES_CONFIRMED
