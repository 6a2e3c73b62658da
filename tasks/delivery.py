"""`delivery.confirm`, `delivery.confirm_many` (public); `delivery.flush`, `delivery.flush_tick`,
`delivery.sweep` (internal)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis
import structlog
from celery import Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from worker import app, get_settings
from worker import runtime as _runtime
from worker.errors import InvalidInput
from worker.flush.flow import flush as flush_portal
from worker.flush.tick import flush_tick as flush_the_tick
from worker.ingest import many, receipts
from worker.ingest.message_id import note_missing
from worker.ingest.validation import confirmation
from worker.names import CONFIRM_MANY_TASK, CONFIRM_TASK, FLUSH_TASK, FLUSH_TICK_TASK, SWEEP_TASK
from worker.ops.records import validated
from worker.runtime import Runtime
from worker.store import triggers
from worker.store.keys import Group

log = structlog.stdlib.get_logger("tasks.delivery")


def runtime() -> Runtime:
    return _runtime.get(get_settings(), app.send_task)


@contextlib.contextmanager
def requeued_if_redis_is_unreachable() -> Iterator[None]:
    """A public task that could not reach the state store (or the broker, to send its flush
    trigger) goes back to its queue. A task that raised is acked, the message gone with it: a
    confirmation must not be lost because Redis restarted between its delivery and its ingest.
    (Run again, the ingest coalesces.)"""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, OperationalError) as exc:
        raise Reject(repr(exc), requeue=True) from exc


#: with DELIVERY_REPLICA_ACKS, an ingest no replica acknowledged is retried this often (1 s
#: apart) before it is accepted on the primary alone (counted, and alerted on)
REPLICA_RETRIES = 3


def again_unless_replicated(
    task: Task[Any, Any], rt: Runtime, replicated: bool, /, **context: Any
) -> None:
    """With DELIVERY_REPLICA_ACKS: a task whose writes no replica acknowledged goes back to the
    broker and runs again (its repeat is idempotent: coalesced, deduplicated, or counted as a
    repeat), waiting for a replica again; after the last retry the primary alone has them."""
    if replicated:
        return
    if task.request.retries < REPLICA_RETRIES:
        raise task.retry(countdown=min(1.0, rt.settings.max_countdown_s))
    log.warning("ingest not replicated", wanted=rt.settings.replica_acks, **context)


@app.task(name=CONFIRM_TASK, bind=True, throws=(InvalidInput,), max_retries=REPLICA_RETRIES)
def confirm(self: Task[Any, Any], /, **payload: Any) -> str:
    """Validate one confirmation, add it to its group's buffer, make sure a flush is due."""
    with requeued_if_redis_is_unreachable():
        rt = runtime()
        required = rt.settings.require_message_id
        item = validated(
            rt, CONFIRM_TASK, lambda p: confirmation(p, require_message_id=required), payload
        )
        ingested = rt.buffer.ingest(item.group, item.message_id, item.element)
        if self.request.retries == 0:
            note_missing(rt, [item])
        rt.send_flush(item.group, ingested.trigger)
        again_unless_replicated(self, rt, ingested.replicated, group=item.group.id)
        return ingested.kind


@app.task(name=FLUSH_TASK, bind=True)
def flush(self: Task[Any, Any], group: str) -> str:
    """Flush the portal of `group`: lease its ready groups, call Bitrix24 once, settle each
    (internal; any worker, any portal; `group` is one of the portal's, a candidate whatever
    the portal's pending index says). A group that is no group id (a message nobody of ours
    sent) flushes nothing."""
    try:
        named = Group.parse(group)
    except (AttributeError, TypeError, ValueError):
        log.warning("flush task ignored", task=FLUSH_TASK, group=repr(group)[:50])
        return "ignored"
    return flush_portal(runtime(), named, self.request.id or "").value


@app.task(name=FLUSH_TICK_TASK, bind=True)
def flush_tick(self: Task[Any, Any], tick: int) -> int:
    """Flush every portal whose wait ended in tick number `tick` (internal; the tick's one
    task, worker/flush/tick.py); how many portals. A tick that is not a whole number (a
    message nobody of ours sent) flushes nothing: the sweep covers whatever it stood for."""
    if type(tick) is not int:
        log.warning("tick task ignored", task=FLUSH_TICK_TASK, tick=repr(tick)[:50])
        return 0
    rt = runtime()
    return flush_the_tick(
        rt, tick, self.request.id or "", lambda t: triggers.send_tick(rt.send_task, t)
    )


@app.task(name=SWEEP_TASK)
def sweep() -> int:
    """Re-trigger groups whose flush is overdue: a lost trigger, or a dead flusher's lease."""
    rt = runtime()
    groups = rt.buffer.claim_due()
    for group in groups:
        triggers.send_flush(rt.send_task, group)
    if groups:
        log.info("sweep re-triggered groups", groups=len(groups))
    receipts.sweep(rt)  # kept delivery.sent records past their TTL; receipts that waited in vain
    return len(groups)


@app.task(name=CONFIRM_MANY_TASK, bind=True, throws=(InvalidInput,), max_retries=REPLICA_RETRIES)
def confirm_many(self: Task[Any, Any], /, **payload: Any) -> dict[str, int]:
    """Validate each confirmation on its own; ingest the valid ones, one script call per group."""
    with requeued_if_redis_is_unreachable():  # as delivery.confirm: run again, each coalesced
        rt = runtime()
        limit, required = rt.settings.confirm_many_max, rt.settings.require_message_id
        judged = validated(
            rt,
            CONFIRM_MANY_TASK,
            lambda p: many.judge(p, limit, require_message_id=required),
            payload,
        )
        done = many.ingest(rt, judged, record_rejected=self.request.retries == 0)
        if self.request.retries == 0:
            note_missing(rt, judged.valid)
        again_unless_replicated(self, rt, done.replicated, task=CONFIRM_MANY_TASK, **done.counts)
    if judged.invalid:
        log.warning("confirmations rejected", task=CONFIRM_MANY_TASK, **done.counts)
    return done.counts
