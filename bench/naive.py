"""The baselines, as real Celery workers on the benchmark's Redis (queues `naive` and `noop`).

`bench.naive_deliver`: one `imconnector.send.status.delivery` call per confirmation, posted at
once with `requests`, no batching and no client-side limiter; a 503 is retried like the official
Python SDK does (sleep 2 s, then 3 s, three attempts in all), then the confirmation is given up.
`bench.noop`: does nothing but count itself done (one Redis round trip), the Celery+Redis ceiling.

Run: REDIS_URL=... celery -A bench.naive worker -Q naive,noop -c 2
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
import requests
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAIVE_QUEUE = "naive"
NOOP_QUEUE = "noop"
NAIVE_TASK = "bench.naive_deliver"
NOOP_TASK = "bench.noop"
NAIVE_STATS = "bench:naive"
NOOP_STATS = "bench:noop"
METHOD = "imconnector.send.status.delivery"
#: the official b24pysdk: retries only HTTP 503, 3 attempts, sleeping 2 s then 3 s
RETRY_SLEEPS_S = (2.0, 3.0)

app = Celery("bench_naive", broker=REDIS_URL, set_as_current=False)
# The same Celery choices as worker/transport/celery_app.py, so only the work done per task differs.
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    worker_send_task_events=True,
    task_send_sent_event=True,
    broker_transport_options={"visibility_timeout": 300},
    broker_connection_retry_on_startup=True,
    task_default_queue=NAIVE_QUEUE,
    worker_hijack_root_logger=False,
)

_clients: dict[int, tuple[redis.Redis, requests.Session]] = {}


def _client() -> tuple[redis.Redis, requests.Session]:
    pid = os.getpid()
    if pid not in _clients:
        s = requests.Session()
        s.trust_env = False
        _clients[pid] = (redis.Redis.from_url(REDIS_URL), s)
    return _clients[pid]


@app.task(name=NAIVE_TASK)
def naive_deliver(
    endpoint: str, token: str, connector: str, line: int, element: dict[str, Any]
) -> str:
    """POST this one confirmation now; on 503 sleep 2 s / 3 s and retry; then give up."""
    r, http = _client()
    body = {"CONNECTOR": connector, "LINE": line, "MESSAGES": [element], "auth": token}
    for sleep_s in (*RETRY_SLEEPS_S, None):
        try:
            status = http.post(endpoint + METHOD, json=body, timeout=(5, 30)).status_code
        except requests.RequestException:
            status = 0
        if status == 200:
            r.hincrby(NAIVE_STATS, "delivered", 1)
            return "delivered"
        if status != 503 or sleep_s is None:
            break
        r.hincrby(NAIVE_STATS, "retried_503", 1)
        time.sleep(sleep_s)
    r.hincrby(NAIVE_STATS, "gave_up", 1)
    return "gave_up"


@app.task(name=NOOP_TASK)
def noop(**_: Any) -> None:
    """Nothing, but count completions and stamp the time, so the benchmark sees the end."""
    r, _http = _client()
    pipe = r.pipeline(transaction=False)
    pipe.hincrby(NOOP_STATS, "done", 1)
    pipe.hset(NOOP_STATS, "last_at", repr(time.time()))
    pipe.execute()
