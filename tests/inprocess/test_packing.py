"""Packing in-process: `flow.flush` of a portal with packing on, against the real Redis and the
simulator's `batch` over HTTP, with a recording send_task. A portal's flush takes every ready
group of the portal: one `batch` request for several, a direct call for one.

Platform facts checked through the simulator: a `batch` request is one slot of the portal's
bucket and carries up to 50 commands; each command is answered on its own in `result.result` or
`result.result_error`; whether imconnector.send.status.delivery is allowed inside `batch` is
unconfirmed, so a portal may refuse it per command (ERROR_BATCH_METHOD_NOT_ALLOWED or
WRONG_AUTH_TYPE) while direct calls work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import dead_letters, stats, wait_for
from tests.inprocess.conftest import SentTasks, element
from worker.flush.flow import flush
from worker.flush.tick import flush_tick
from worker.ingest.validation import registration
from worker.names import FLUSH_TASK, FLUSH_TICK_TASK
from worker.runtime import Runtime
from worker.store.keys import Group, Keys

KEYS = Keys()
PORTAL = "p1"
LIMIT = "QUERY_LIMIT_EXCEEDED"


def line(n: int, connector: str = "myconnector") -> Group:
    return Group(PORTAL, connector, n)


def register(
    rt: Runtime, sim: Simulator, packing: str | None = "batch", add: bool = True, **extra: Any
) -> None:
    """The simulated portal (a slow bucket unless told otherwise) and its portal.register."""
    creds = (
        sim.add_portal(PortalConfig(member_id=PORTAL, connectors=["myconnector"]))
        if add
        else sim.credentials(PORTAL)
    )
    kwargs = creds.as_register_kwargs() | extra
    if packing is not None:
        kwargs["packing"] = packing
    rt.portals.register(registration(kwargs))


def fill(rt: Runtime, group: Group, n: int, first: int) -> None:
    """Ingest n confirmations; the flush tasks their triggers asked for are the test's to run
    (the trigger is released as that task would release it)."""
    for i in range(first, first + n):
        rt.buffer.ingest(group, str(i), element(i))
    rt.redis.delete(KEYS.trigger(group.portal))


def flushes_to(sent: SentTasks, group: Group) -> list[Any]:
    return [c for c in sent.calls if c.name == FLUSH_TASK and c.kwargs["group"] == group.id]


def batch_requests(sim: Simulator) -> int:
    return sim.counters(PORTAL).get("batch_requests", 0)


def test_ready_groups_go_in_one_batch_request_and_settle_each(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    """The portal is the unit of a flush: its ready groups go in one request, one slot."""
    rt = make_rt(batch_size=2)
    register(rt, sim, rate_per_s=5, rate_burst=1)
    groups = [line(n) for n in (1, 2, 3)]
    for i, g in enumerate(groups):
        fill(rt, g, 2, first=10 * i + 1)
    assert flush(rt, groups[0], "t") == "packed", "the burst's one slot: all three lines"
    assert batch_requests(sim) == 1, "three groups, one request"
    assert float(r.hget(KEYS.bucket(PORTAL), "level") or 0) == 1.0, "one slot of the budget"
    accepted = sim.accepted(PORTAL)
    assert sorted(int(a.im["message_id"]) for a in accepted) == [1, 2, 11, 12, 21, 22]
    assert {a.via for a in accepted} == {"batch"}
    assert {a.command for a in accepted} == {"g0", "g1", "g2"}, "one request"
    s = stats(r)
    assert s["delivered"] == 6 and s["pending"] == 0
    assert s["packed_calls"] == 1 and s["packed_groups"] == 3
    for g in groups:
        assert not r.exists(KEYS.items(g), KEYS.queue(g), KEYS.leased(g), KEYS.lease(g))
    assert r.zcard(KEYS.pending(PORTAL)) == 0
    assert flush(rt, groups[1], "t") == "wait", "line 2's own trigger finds it delivered"


def test_oldest_ready_first_so_a_busy_line_cannot_keep_a_sparse_one_out(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    rt = make_rt(batch_size=1, pack_groups=2)
    register(rt, sim, rate_per_s=5, rate_burst=1)
    busy, *sparse = [line(n) for n in (1, 2, 3, 4)]
    for i, g in enumerate([busy, *sparse]):
        fill(rt, g, 1, first=100 * (i + 1))
    assert flush(rt, busy, "t") == "packed"
    first = {a.line for a in sim.accepted(PORTAL)}
    assert first == {1, 2}, "the two that were ready first"
    assert flushes_to(sent, sparse[1]), "the next one gets the portal's task for the next slot"
    fill(rt, busy, 1, first=150)  # the busy line is ready again at once...
    wait_for(lambda: flush(rt, busy, "t") == "packed", 5, what="second pack")
    second = {a.line for a in sim.accepted(PORTAL)} - first
    assert second == {3, 4}, "...but behind the sparse lines that waited longer"
    wait_for(lambda: flush(rt, busy, "t") == "delivered", 5, what="the busy line, alone")
    assert stats(r)["delivered"] == 5


def test_each_command_settled_by_its_own_answer(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    """A command's error goes through the policy for its group only: a transient one retries
    that group, a connector without a provider parks that connector; the others are
    delivered."""
    rt = make_rt(batch_size=1)
    register(rt, sim, rate_per_s=5, rate_burst=1)
    good, flaky, wrong = line(1), line(2), line(3, connector="otherconn")
    for i, g in enumerate([good, flaky, wrong]):
        fill(rt, g, 1, first=i + 1)
    sim.inject(Fault(error="INTERNAL_SERVER_ERROR", target="batch_command", count=1))
    assert flush(rt, good, "t") == "packed"
    delivered = sorted(int(a.im["message_id"]) for a in sim.accepted(PORTAL))
    failed = [g for g in (good, flaky) if r.hget(KEYS.meta(g), "failures") == b"1"]
    assert len(failed) == 1, "the faulted command's group counts one failure"
    assert r.zcard(KEYS.queue(failed[0])) == 1, "and is back in its queue"
    assert r.hexists(KEYS.portal(PORTAL), "cpark:otherconn"), "that connector is parked"
    assert r.zcard(KEYS.queue(wrong)) == 1 and not dead_letters(r), "its item kept"
    assert not r.hget(KEYS.portal(PORTAL), "blocked_until"), "the portal is not"
    assert len(delivered) == 1  # the group without a fault
    s = stats(r)
    assert s["api_error:INTERNAL_SERVER_ERROR"] == 1
    wait_for(lambda: flush(rt, failed[0], "t") in ("packed", "delivered"), 5, what="retry")
    assert stats(r)["delivered"] == 2


def test_a_request_failing_as_a_whole_is_handled_for_every_group(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    """503 QUERY_LIMIT_EXCEEDED for the whole request: every group goes back, the portal
    backs off and empties its budget, nothing is dead-lettered."""
    rt = make_rt(batch_size=1)
    register(rt, sim, rate_per_s=5, rate_burst=1)
    groups = [line(n) for n in (1, 2, 3)]
    for i, g in enumerate(groups):
        fill(rt, g, 1, first=i + 1)
    sim.inject(Fault(error=LIMIT, portal=PORTAL, count=1))
    assert flush(rt, groups[0], "t") == "packed"
    for g in groups:
        assert r.zcard(KEYS.queue(g)) == 1 and not r.exists(KEYS.leased(g))
    assert float(r.hget(KEYS.portal(PORTAL), "blocked_until") or 0) > 0
    assert stats(r)["api_error:" + LIMIT] == 1
    assert not dead_letters(r)
    for g in groups:
        wait_for(lambda g=g: flush(rt, g, "t") == "packed" or not r.exists(KEYS.items(g)), 10)
    assert stats(r)["delivered"] == 3


@pytest.mark.parametrize("code", ["ERROR_BATCH_METHOD_NOT_ALLOWED", "WRONG_AUTH_TYPE"])
def test_a_refusal_turns_packing_off_and_the_groups_go_one_call_each(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks, code: str
) -> None:
    rt = make_rt(batch_size=1)
    register(rt, sim)
    sim.refuse_in_batch(PORTAL, code)
    group, other = line(1), line(2)
    trigger = rt.buffer.ingest(group, "1", element(1)).trigger
    rt.buffer.ingest(other, "2", element(2))
    assert rt.buffer.packing_on(PORTAL)
    assert flush(rt, group, trigger.task_id) == "packed", "the trigger's own flush task"
    assert not rt.buffer.packing_on(PORTAL)
    portal = r.hgetall(KEYS.portal(PORTAL))
    assert portal[b"packing_off_reason"] == code.encode() and float(portal[b"packing_off_at"]) > 0
    for g in (group, other):
        assert r.zcard(KEYS.queue(g)) == 1 and not r.hget(KEYS.meta(g), "failures")
    retry = flushes_to(sent, group)[-1]
    assert not retry.countdown, "sent again at once"
    assert flush(rt, group, retry.task_id or "") == "delivered"
    wait_for(lambda: flush(rt, other, "t") == "delivered", 5, what="the other group, alone")
    assert {a.via for a in sim.accepted(PORTAL)} == {"direct"}
    s = stats(r)
    assert s["packing_turned_off"] == 1 and s["delivered"] == 2 and not dead_letters(r)
    assert batch_requests(sim) == 1, "no batch after the refusal"


def test_the_registration_chooses_and_an_explicit_choice_clears_a_refusal(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    rt = make_rt(packing="batch")
    register(rt, sim, packing=None)
    assert rt.buffer.packing_on(PORTAL), "DELIVERY_PACKING=batch"
    register(rt, sim, packing="off", add=False)
    assert not rt.buffer.packing_on(PORTAL), "the portal's own choice wins"
    off = make_rt()
    register(off, sim, packing="batch", add=False)
    assert off.buffer.packing_on(PORTAL), "on for this portal while DELIVERY_PACKING=off"
    r.hset(KEYS.portal(PORTAL), mapping={"packing_off_at": "1", "packing_off_reason": "X"})
    register(off, sim, packing=None, add=False)
    assert not rt.buffer.packing_on(PORTAL), "a registration without a choice keeps the refusal"
    register(off, sim, packing="batch", add=False)
    assert off.buffer.packing_on(PORTAL) and not r.hexists(
        KEYS.portal(PORTAL), "packing_off_reason"
    )


def test_a_refresh_under_way_is_waited_for_as_by_a_direct_flush(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    """No call with a token being replaced: a packing portal waits as any other does."""
    rt = make_rt(batch_size=1)
    register(rt, sim)
    groups = [line(1), line(2)]
    for i, g in enumerate(groups):
        fill(rt, g, 1, first=i + 1)
    r.set(KEYS.refresh_lock(PORTAL), "someone", px=5000)
    assert flush(rt, groups[0], "t") == "refresh_wait"
    assert batch_requests(sim) == 0
    assert r.smembers(KEYS.refresh_waiters(PORTAL)) == {g.id.encode() for g in groups}
    r.delete(KEYS.refresh_lock(PORTAL))
    assert flush(rt, groups[0], "t") == "packed"
    assert stats(r)["delivered"] == 2


def test_lines_do_not_multiply_tasks_or_calls(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis, sent: SentTasks
) -> None:
    """A light portal's lines, each with a confirmation inside one window: one flush task (the
    tick's its trigger names), one request carrying every line."""
    rt, sent_again = make_rt(), list[int]()
    register(rt, sim)
    groups = [line(n) for n in (1, 2, 3, 4)]
    for i, g in enumerate(groups):  # as delivery.confirm does
        rt.send_flush(g, rt.buffer.ingest(g, str(i + 1), element(i + 1)).trigger)
    tasks = [c for c in sent.calls if c.name in (FLUSH_TASK, FLUSH_TICK_TASK)]
    assert len(tasks) == 1 and tasks[0].countdown, "one trigger for the portal, at the window"
    (task,) = tasks
    at = float((r.get(KEYS.trigger(PORTAL)) or b"").split(b":")[-1])  # the trigger's time
    wait_for(lambda: rt.buffer.server_time() >= at + 0.002, what="its time (kept to 1 ms)")
    assert flush_tick(rt, task.kwargs["tick"], task.task_id or "", sent_again.append) == 1
    assert batch_requests(sim) == 1 and sim.counters(PORTAL)["calls"] == 1
    assert {a.line for a in sim.accepted(PORTAL)} == {1, 2, 3, 4}
    assert [c for c in sent.calls if c.name in (FLUSH_TASK, FLUSH_TICK_TASK)] == tasks
    assert not sent_again, "no task per line, none again"


def _heavy(i: int) -> dict[str, Any]:
    """A confirmation with 100 external ids (103 variables in a packed command)."""
    return element(i) | {"message": {"id": [f"x{i}-{k}" for k in range(100)], "date": 1}}


def test_a_group_over_php_max_input_vars_is_split_and_loses_nothing(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    """rest_util.php ParseBatchQuery reads each command with parse_str, which drops variables
    past max_input_vars (1000) under a SUCCESS: a group of 50 confirmations with 100 external ids
    each (5202 variables) goes as seven commands of at most 900, and every id arrives."""
    rt = make_rt(batch_size=50)
    register(rt, sim)
    group, light = line(1), line(2)
    for i in range(1, 51):
        rt.buffer.ingest(group, str(i), _heavy(i))
    fill(rt, light, 1, first=100)  # a second ready group: the flush packs
    assert flush(rt, group, "t") == "packed"
    accepted = sim.accepted(PORTAL)
    heavy = [a for a in accepted if a.line == 1]
    assert sorted(int(a.im["message_id"]) for a in heavy) == list(range(1, 51))
    assert all(len(a.message["id"]) == 100 for a in heavy)
    assert {a.command for a in heavy} == {f"g0p{j}" for j in range(7)}
    assert {a.command for a in accepted if a.line == 2} == {"g1"}
    assert sim.counters(PORTAL)["input_vars_truncated"] == 0
    assert batch_requests(sim) == 1 and stats(r)["delivered"] == 51


def test_a_command_refused_as_past_the_fiftieth_is_sent_again_not_dead_lettered(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    """rest_provider.php methodsBatch runs 50 commands and refuses the rest, each with
    ERROR_BATCH_LENGTH_EXCEEDED in result_error: the group was not run, so it goes again."""
    rt = make_rt(batch_size=1, max_attempts=1)  # a transient failure would dead-letter at once
    register(rt, sim)
    groups = [line(1), line(2)]
    for i, g in enumerate(groups):
        fill(rt, g, 1, first=i + 1)
    sim.inject(Fault(error="ERROR_BATCH_LENGTH_EXCEEDED", target="batch_command", count=1))
    assert flush(rt, groups[0], "t") == "packed"
    assert not dead_letters(r)
    assert sum(r.zcard(KEYS.queue(g)) for g in groups) == 1, "the refused one back in its queue"
    wait_for(
        lambda: flush(rt, groups[0], "t") and not any(r.zcard(KEYS.queue(g)) for g in groups), 5
    )
    assert sorted(int(a.im["message_id"]) for a in sim.accepted(PORTAL)) == [1, 2]
    assert stats(r)["delivered"] == 2 and not dead_letters(r)


def test_a_group_no_batch_request_can_carry_goes_as_one_direct_call(
    make_rt: Callable[..., Runtime], sim: Simulator, r: redis.Redis
) -> None:
    """410 confirmations with 100 external ids each need 52 commands of at most 900 variables:
    more than the 50 a `batch` runs. The group goes as one direct JSON call (no parse_str), after
    the `batch` of the portal's other ready group."""
    rt = make_rt(batch_size=410)
    register(rt, sim)
    group, light = line(1), line(2)
    for i in range(1, 411):
        rt.buffer.ingest(group, str(i), _heavy(i))
    fill(rt, light, 1, first=1000)
    assert flush(rt, group, "t") == "packed"
    accepted = sim.accepted(PORTAL)
    heavy = [a for a in accepted if a.line == 1]
    assert sorted(int(a.im["message_id"]) for a in heavy) == list(range(1, 411))
    assert {a.via for a in heavy} == {"direct"} and len({a.call_id for a in heavy}) == 1
    assert {a.via for a in accepted if a.line == 2} == {"batch"}
    assert batch_requests(sim) == 1 and stats(r)["delivered"] == 411
