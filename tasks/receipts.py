"""`delivery.sent`, `delivery.delivered` (public): confirm by the external id
(worker/ingest/receipts.py does the work)."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task

from tasks.delivery import REPLICA_RETRIES, requeued_if_redis_is_unreachable, runtime
from worker import app
from worker.errors import InvalidInput
from worker.ingest import receipt_payloads, receipts
from worker.names import DELIVERED_TASK, SENT_TASK
from worker.ops.records import validated
from worker.runtime import Runtime

log = structlog.stdlib.get_logger("tasks.receipts")


@app.task(name=SENT_TASK, bind=True, throws=(InvalidInput,), max_retries=REPLICA_RETRIES)
def sent(self: Task[Any, Any], /, **payload: Any) -> str:
    """Keep the Bitrix24 ids of a message sent out, under its external ids."""
    with requeued_if_redis_is_unreachable():
        rt = runtime()
        item = validated(rt, SENT_TASK, receipt_payloads.sent, payload)
        done = receipts.record_sent(rt, item, payload)
        _again_unless_replicated(self, rt, SENT_TASK, done)
        return done.kind


@app.task(name=DELIVERED_TASK, bind=True, throws=(InvalidInput,), max_retries=REPLICA_RETRIES)
def delivered(self: Task[Any, Any], /, **payload: Any) -> dict[str, int]:
    """A receipt: confirm each kept record it names; ids not kept yet wait for their `sent`."""
    with requeued_if_redis_is_unreachable():
        rt = runtime()
        item = validated(rt, DELIVERED_TASK, receipt_payloads.receipt, payload)
        done = receipts.receive(rt, item, payload)
        _again_unless_replicated(self, rt, DELIVERED_TASK, done)
        return done.counts


def _again_unless_replicated(
    task: Task[Any, Any], rt: Runtime, name: str, done: receipts.Outcome
) -> None:
    """As `delivery.confirm`: with DELIVERY_REPLICA_ACKS, a task whose writes no replica
    acknowledged runs again (its repeat is idempotent: a `sent` counted as repeated, a receipt
    as deduplicated, and its WAIT covers the first run's writes); after the last retry the
    primary alone has them."""
    if done.replicated:
        return
    if task.request.retries < REPLICA_RETRIES:
        raise task.retry(countdown=min(1.0, rt.settings.max_countdown_s))
    log.warning("ingest not replicated", task=name, wanted=rt.settings.replica_acks)
