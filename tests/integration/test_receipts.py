"""Confirm by the external id, end to end: the producer's `sent` and `delivered` go through
Redis to real worker processes, and the simulator receives the confirmation with exactly the
Bitrix24 ids the `sent` record held (docs/receipts.md)."""

from __future__ import annotations

from typing import Any

import redis

from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, producer, rejected_records, run_cli, stats, wait_for

DATE = 1738065600


def im(message_id: int) -> dict[str, int]:
    return {"chat_id": 845, "message_id": message_id}


def accepted(sim: Simulator, portal: str) -> list[tuple[Any, Any, Any, str, int]]:
    return [(a.im, a.message, a.chat, a.connector, a.line) for a in sim.accepted(portal)]


def test_sent_then_delivered_in_either_order_and_repeats_confirm_once(
    fleet: Fleet, sim: Simulator, r: redis.Redis, redis_url: str
) -> None:
    fleet.start(concurrency=2, beat=True)
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="rc")).as_register_kwargs())
    common = {"portal": "rc", "connector": "myconnector", "line": 107}
    # in order: sent, then its receipt (naming one of its two ids), then the receipt again
    p.sent(**common, im=im(1), message={"id": ["tg-1", "tg-1b"]}, chat={"id": "c9"})
    wait_for(lambda: stats(r).get("sent_kept") == 1, what="the record kept")
    p.delivered(
        portal="rc", connector="MyConnector", message_id="tg-1b", date=DATE, chat={"id": "c9"}
    )
    # reverse order: the receipt first, its sent within DELIVERY_RECEIPT_WAIT_S
    p.delivered(portal="rc", connector="myconnector", message_id=["tg-2"], date=DATE + 1)
    wait_for(lambda: stats(r).get("receipts_waiting") == 1, what="the early receipt to wait")
    p.sent(**common, im=im(2), message={"id": ["tg-2"]})
    wait_for(lambda: len(sim.accepted("rc")) >= 2, what="both confirmations delivered")
    assert sorted(accepted(sim, "rc"), key=lambda a: a[0]["message_id"]) == [
        (im(1), {"id": ["tg-1", "tg-1b"], "date": DATE}, {"id": "c9"}, "myconnector", 107),
        (im(2), {"id": ["tg-2"], "date": DATE + 1}, None, "myconnector", 107),
    ], "exactly the im ids the sent records held, message.id all of their external ids"
    # repeats: the same sent, the same receipt again: deduplicated, nothing more reaches the portal
    p.sent(**common, im=im(1), message={"id": ["tg-1", "tg-1b"]}, chat={"id": "c9"})
    p.delivered(
        portal="rc", connector="myconnector", message_id="tg-1", date=DATE, chat={"id": "c9"}
    )
    wait_for(
        lambda: stats(r).get("receipts_deduplicated") == 1 and stats(r).get("sent_repeated") == 1,
        what="the repeats counted",
    )
    # a second sent of the same external id for another Bitrix24 message is rejected, with why
    p.sent(**common, im=im(3), message={"id": ["tg-2"]})
    wait_for(lambda: rejected_records(r), what="the conflicting sent rejected")
    rejected = rejected_records(r)[0]
    assert rejected["task"] == "delivery.sent" and rejected["field"] == "message.id"
    assert "already kept for another Bitrix24 message" in rejected["rule"]
    listed = run_cli(redis_url, "rejected", "--limit", "1")
    assert "already kept for another Bitrix24 message" in listed.stdout
    assert len(sim.accepted("rc")) == 2
    p.close()


def test_one_receipt_naming_several_records_and_one_that_never_gets_its_sent(
    fleet: Fleet, sim: Simulator, r: redis.Redis, redis_url: str
) -> None:
    fleet.start(concurrency=2, beat=True, DELIVERY_RECEIPT_WAIT_S="1")
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="rm")).as_register_kwargs())
    common = {"portal": "rm", "connector": "myconnector", "line": 5}
    p.sent(**common, im=im(10), message={"id": ["a1", "a2"]})
    p.sent(**common, im=im(11), message={"id": ["b1"]})
    wait_for(lambda: stats(r).get("sent_kept") == 2, what="two records kept")
    p.delivered(portal="rm", connector="myconnector", message_id=["a1", "a2", "b1"], date=DATE)
    p.delivered(portal="rm", connector="myconnector", message_id="never-sent", date=DATE)
    wait_for(lambda: len(sim.accepted("rm")) >= 2, what="one confirmation per record")

    def lone() -> list[dict[str, Any]]:
        return [rec for rec in rejected_records(r) if rec["task"] == "delivery.delivered"]

    # the sweep counts the receipt in its script, then writes the rejected record: wait for both
    wait_for(
        lambda: stats(r).get("receipts_unmatched") == 1 and lone(),
        30,
        what="the lone receipt counted and rejected",
    )
    assert sorted(a.im["message_id"] for a in sim.accepted("rm")) == [10, 11]
    assert [a.message["id"] for a in sorted(sim.accepted("rm"), key=lambda a: a.index)] in (
        [["a1", "a2"], ["b1"]],
        [["b1"], ["a1", "a2"]],
    )
    assert len(lone()) == 1 and "'never-sent' has no delivery.sent record" in lone()[0]["rule"]
    assert stats(r).get("ingested") == 2, "nothing of the lone receipt reached a buffer"
    p.close()


def test_records_expire_and_unconfirmed_ones_are_listed_then_counted(
    fleet: Fleet, sim: Simulator, r: redis.Redis, redis_url: str
) -> None:
    fleet.start(concurrency=1, beat=True, DELIVERY_SENT_TTL_S="3")
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="rx")).as_register_kwargs())
    common = {"portal": "rx", "connector": "myconnector", "line": 7}
    p.sent(**common, im=im(20), message={"id": ["x-20"]})
    p.sent(**common, im=im(21), message={"id": ["x-21"]})
    p.delivered(portal="rx", connector="myconnector", message_id="x-21", date=DATE)
    wait_for(lambda: len(sim.accepted("rx")) == 1, what="the confirmed one delivered")
    listed = run_cli(redis_url, "unconfirmed", "rx")
    assert listed.returncode == 0, listed.stderr
    assert '"external_ids": ["x-20"]' in listed.stdout and "x-21" not in listed.stdout
    # the sweep counts in its script, then logs: wait for both
    wait_for(
        lambda: stats(r).get("sent_expired") == 2 and "records expired unconfirmed" in fleet.logs(),
        30,
        what="both records to expire, the unconfirmed one logged",
    )
    assert stats(r)["sent_expired_unconfirmed"] == 1
    assert run_cli(redis_url, "unconfirmed", "rx").stdout == ""
    p.close()
