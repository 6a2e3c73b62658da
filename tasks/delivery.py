"""`delivery.confirm` (public), `delivery.flush` and `delivery.sweep` (internal)."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task

from worker import app, settings
from worker import runtime as _runtime
from worker.errors import InvalidInput
from worker.keys import Group
from worker.pipeline import flush as flush_group
from worker.records import validated
from worker.runtime import Runtime
from worker.validation import confirmation

log = structlog.stdlib.get_logger("tasks.delivery")


def runtime() -> Runtime:
    return _runtime.get(settings, app.send_task)


@app.task(name="delivery.confirm", throws=(InvalidInput,))
def confirm(**payload: Any) -> str:
    """Validate one confirmation, add it to its group's buffer, make sure a flush is due."""
    rt = runtime()
    item = validated(rt, "delivery.confirm", confirmation, payload)
    added, trigger = rt.buffer.ingest(item.group, item.message_id, item.element)
    rt.send_flush(item.group, trigger)
    return "added" if added else "coalesced"


@app.task(name="delivery.flush", bind=True)
def flush(self: Task[Any, Any], group: str) -> str:
    """Lease a batch of the group, call Bitrix24, settle (internal; any worker, any group)."""
    return flush_group(runtime(), Group.parse(group), self.request.id or "")


@app.task(name="delivery.sweep")
def sweep() -> int:
    """Re-trigger groups whose flush is overdue: a lost trigger, or a dead flusher's lease."""
    rt = runtime()
    groups = rt.buffer.claim_due()
    for group in groups:
        rt.send_task("delivery.flush", kwargs={"group": group.id}, queue="flush")
    if groups:
        log.info("sweep re-triggered groups", groups=len(groups))
    return len(groups)
