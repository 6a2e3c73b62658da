"""Task events without secrets: what the worker's events (and so Flower) show of a task's
arguments is masked by the same redaction as the logs (worker/ops/logs.py)."""

from __future__ import annotations

from celery import Task
from celery.worker.request import Request

from worker.ops.logs import redact


class RedactedRequest(Request):
    """What the worker's task events (and so Flower) show of a task's arguments: masked."""

    @property
    def argsrepr(self) -> str:
        return repr(redact(list(self.args or ())))

    @property
    def kwargsrepr(self) -> str:
        return repr(redact(dict(self.kwargs or {})))


class RedactedTask(Task):  # type: ignore[type-arg]
    Request = "worker.transport.events:RedactedRequest"
