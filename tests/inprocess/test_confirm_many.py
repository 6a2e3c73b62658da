"""`delivery.confirm_many` in-process: the envelope's rule rejects a message whole; each element
is judged on its own (a bad one is recorded under its index, the others are ingested); one
script call per group (one round trip for the message), at most one flush trigger per group."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from tests.harness import stats
from tests.inprocess.conftest import SentTasks, element
from worker.errors import InvalidInput
from worker.ingest import many
from worker.names import FLUSH_TASK
from worker.store.keys import Group, Keys

KEYS = Keys()


def confirmation(line: int, message_id: int, **extra: Any) -> dict[str, Any]:
    return {"portal": "p1", "connector": "myconnector", "line": line, **element(message_id)} | extra


def test_the_envelope_is_judged_whole() -> None:
    with pytest.raises(InvalidInput) as too_many:
        many.judge({"confirmations": [confirmation(1, i) for i in range(1, 5)]}, limit=3)
    assert too_many.value.field == "confirmations"
    assert "at most 3" in too_many.value.rule and "DELIVERY_CONFIRM_MANY_MAX" in too_many.value.rule
    for payload, field in [
        ({}, "confirmations"),
        ({"confirmations": {"a": 1}}, "confirmations"),
        ({"confirmations": [], "extra": 1}, "extra"),
    ]:
        with pytest.raises(InvalidInput) as bad:
            many.judge(payload, limit=3)
        assert bad.value.field == field


def test_each_element_on_its_own_with_its_index() -> None:
    items: list[Any] = [
        confirmation(1, 1),
        confirmation("x", 2),  # type: ignore[arg-type]
        "not an object",
        confirmation(2, 3, im={"chat_id": 1}),
        confirmation(2, 4),
    ]
    judged = many.judge({"confirmations": items}, limit=500)
    assert [c.message_id for c in judged.valid] == ["1", "4"]
    assert [(i, e.field) for i, e, _ in judged.invalid] == [
        (1, "confirmations[1].line"),
        (2, "confirmations[2]"),
        (3, "confirmations[3].im.message_id"),
    ]
    assert "must be a positive integer" in str(judged.invalid[0][1])


def test_ingest_one_call_per_group_records_the_rejected(
    make_rt: Any, r: redis.Redis, sent: SentTasks
) -> None:
    rt = make_rt(flush_tick_s=0)  # the group's own trigger task, named in it
    items: list[Any] = [confirmation(1, i) for i in range(1, 4)]
    items += [confirmation(2, 10), confirmation(1, 2), {"portal": "p1"}]  # a repeat, a bad one
    done = many.ingest(rt, many.judge({"confirmations": items}, limit=500))
    assert done.counts == {"added": 4, "coalesced": 1, "deduplicated": 0, "rejected": 1}
    assert done.replicated
    g1, g2 = Group("p1", "myconnector", 1), Group("p1", "myconnector", 2)
    assert [m.decode() for m in r.zrange(KEYS.queue(g1), 0, -1)] == ["1", "2", "3"]
    assert r.zcard(KEYS.queue(g2)) == 1
    flushes = [c.kwargs["group"] for c in sent.calls if c.name == FLUSH_TASK]
    assert flushes == [g1.id], "one trigger per portal: its flush takes both groups"
    s = stats(r)
    assert s["ingested"] == 4 and s["coalesced"] == 1 and s["rejected"] == 1 and s["pending"] == 4
    (record,) = [json.loads(x) for x in r.lrange(KEYS.rejected, 0, -1)]
    assert (
        record["task"] == "delivery.confirm_many"
        and record["field"] == "confirmations[5].connector"
    )


def test_a_call_that_fills_a_batch_triggers_at_once(
    make_rt: Any, r: redis.Redis, sent: SentTasks
) -> None:
    rt = make_rt(batch_size=3, flush_window_s=0.5, flush_tick_s=0)
    g1 = Group("p1", "myconnector", 1)
    many.ingest(rt, many.judge({"confirmations": [confirmation(1, 1)]}, limit=10))
    assert sent.calls[-1].countdown == 0.5  # the window, from the first item
    assert r.get(KEYS.trigger(g1.portal)) is not None
    r.delete(KEYS.trigger(g1.portal))  # its flush task ran (and found the group not ready)
    many.ingest(rt, many.judge({"confirmations": [confirmation(1, i) for i in (2, 3)]}, limit=10))
    assert len(sent.calls) == 2 and not sent.calls[-1].countdown, "a full batch: now"
    many.ingest(rt, many.judge({"confirmations": [confirmation(1, 4)]}, limit=10))
    assert len(sent.calls) == 2, "no new trigger for a group already waiting"


def test_replica_acks_are_waited_for_once_per_message(
    make_rt: Any, r: redis.Redis, sent: SentTasks
) -> None:
    """DELIVERY_REPLICA_ACKS: the message's ingest WAITs once; this Redis has no replica, so it
    is not replicated (the task retries it, coalesced with itself) and the timeout is counted."""
    rt = make_rt(replica_acks=1, replica_timeout_ms=20)
    items = [confirmation(line, i) for i, line in ((1, 1), (2, 2), (3, 1))]
    done = many.ingest(rt, many.judge({"confirmations": items}, limit=10))
    assert done.counts["added"] == 3 and not done.replicated
    assert stats(r)["replica_wait_timeouts"] == 1
    again = many.ingest(rt, many.judge({"confirmations": items}, limit=10))
    assert again.counts == {"added": 0, "coalesced": 3, "deduplicated": 0, "rejected": 0}


def test_a_repeat_of_a_delivered_id_is_dropped_within_the_window(
    make_rt: Any, r: redis.Redis
) -> None:
    """DELIVERY_DEDUP_WINDOW_S: as delivery.confirm, an id the group delivered is not sent
    again (the delivered set is what settle.lua records)."""
    rt = make_rt(dedup_window_s=600)
    g1 = Group("p1", "myconnector", 1)
    r.zadd(KEYS.delivered(g1), {"1": float(r.time()[0])})
    items = [confirmation(1, 1), confirmation(1, 2)]
    done = many.ingest(rt, many.judge({"confirmations": items}, limit=10))
    assert done.counts == {"added": 1, "coalesced": 0, "deduplicated": 1, "rejected": 0}
    assert stats(r)["deduplicated"] == 1
