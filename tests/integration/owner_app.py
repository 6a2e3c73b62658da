"""A second Celery app, as a connector service would run it: it consumes the two token tasks the
worker sends by name, and records what it received in Redis (list `owner:received`).

Started by the tests as its own worker process: `celery -A tests.integration.owner_app worker -Q
owner`. It imports nothing from the worker: only the task names and the JSON kwargs are shared.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery

RENEWED_TASK = "connector.tokens_renewed"
REQUEST_TASK = "connector.token_request"
QUEUE = "owner"
RECEIVED = "owner:received"

app = Celery("owner", broker=os.environ.get("REDIS_URL", "memory://"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)


def _record(task: str, kwargs: dict[str, Any]) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.rpush(RECEIVED, json.dumps({"task": task, "kwargs": kwargs}))
    client.close()


@app.task(name=RENEWED_TASK)
def tokens_renewed(**kwargs: Any) -> None:
    _record(RENEWED_TASK, kwargs)


@app.task(name=REQUEST_TASK)
def token_request(**kwargs: Any) -> None:
    _record(REQUEST_TASK, kwargs)
