"""`delivery.sent`, `delivery.delivered` (public): confirm by the external id
(worker/ingest/receipts.py does the work)."""

from __future__ import annotations

from typing import Any

from celery import Task

from tasks.delivery import (
    REPLICA_RETRIES,
    again_unless_replicated,
    requeued_if_redis_is_unreachable,
    runtime,
)
from worker import app
from worker.errors import InvalidInput
from worker.ingest import receipt_payloads, receipts
from worker.names import DELIVERED_TASK, SENT_TASK
from worker.ops.records import validated


@app.task(name=SENT_TASK, bind=True, throws=(InvalidInput,), max_retries=REPLICA_RETRIES)
def sent(self: Task[Any, Any], /, **payload: Any) -> str:
    """Keep the Bitrix24 ids of a message sent out, under its external ids."""
    with requeued_if_redis_is_unreachable():
        rt = runtime()
        item = validated(rt, SENT_TASK, receipt_payloads.sent, payload)
        done = receipts.record_sent(rt, item, payload)
        again_unless_replicated(self, rt, done.replicated, task=SENT_TASK)
        return done.kind


@app.task(name=DELIVERED_TASK, bind=True, throws=(InvalidInput,), max_retries=REPLICA_RETRIES)
def delivered(self: Task[Any, Any], /, **payload: Any) -> dict[str, int]:
    """A receipt: confirm each kept record it names; ids not kept yet wait for their `sent`."""
    with requeued_if_redis_is_unreachable():
        rt = runtime()
        item = validated(rt, DELIVERED_TASK, receipt_payloads.receipt, payload)
        done = receipts.receive(rt, item, payload)
        again_unless_replicated(self, rt, done.replicated, task=DELIVERED_TASK)
        return done.counts
