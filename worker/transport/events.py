"""Task events without secrets: what the worker's events (and so Flower) show of a task's
arguments is masked by the one redaction (worker/ops/redaction.py), as the logs are."""

from __future__ import annotations

from celery import Task
from celery.worker.request import Request

from worker.ops.redaction import redact


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
