"""The Celery app, configured for this workload: many tiny ingest tasks, fewer flush tasks that
make one HTTP call each, and a sweep on beat. Each choice is explained where it is made.

`create_app(settings)` builds it; `worker.app` (worker/__init__.py) builds it once, on first use,
so importing the library's modules neither reads the environment nor touches kombu.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cached_property
from typing import Any

from celery import Celery, signals
from celery.apps.worker import Worker

from worker.names import FLUSH_QUEUE, FLUSH_TASK, FLUSH_TICK_TASK, INGEST_QUEUE, SWEEP_TASK
from worker.ops.logs import configure_logging
from worker.settings import Settings
from worker.transport import kombu_redis, nodes
from worker.transport.config import broker_amqp_conf, broker_redis_conf, broker_tls


class DeliveryApp(Celery):
    """Celery, whose workers get a unique node name by default (worker/transport/nodes.py)."""

    @cached_property
    def Worker(self) -> type[Worker]:
        worker: type[Worker] = self.subclass_with_self(nodes.Worker)
        return worker


def create_app(settings: Settings) -> Celery:
    """The worker's Celery app for `settings`. Redis broker URLs use the patched transport
    (worker/transport/kombu_redis/); a worker refuses to start on a kombu it was not tested
    with."""
    kombu_redis.install()
    # RedactedTask: every task's events carry masked arguments (Flower shows no token).
    app = DeliveryApp(
        "b24delivery",
        include=["tasks.delivery", "tasks.portal", "tasks.receipts"],
        task_cls="worker.transport.events:RedactedTask",
    )
    app.conf.update(
        broker_url=settings.broker,
        # rediss://: verify the server's certificate (kombu alone would not)
        broker_use_ssl=broker_tls(settings.broker),
        # JSON only: producers in any language, and no pickle from the network.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Nobody reads results: the buffer in Redis is the state, Flower shows task outcomes.
        task_ignore_result=True,
        # Ack after the task ran, and re-queue when a worker dies mid-task: both tasks are safe to
        # run twice (ingest coalesces by im.message_id, a flush holds a lease).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Queues and transport options per broker: worker/transport/config.py.
        **(broker_amqp_conf(settings) if settings.broker_is_amqp else broker_redis_conf(settings)),
        # Keep retrying the broker forever (with Celery's backoff) instead of exiting.
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Short tasks: each process reserves 4 messages, enough to hide the Redis round trip
        # without letting one process hoard a backlog (acks_late keeps them recoverable).
        worker_prefetch_multiplier=4,
        # A backstop for memory: a pool process that grew past the limit (a leak, one huge
        # answer) is replaced after its task ends (KiB here; DELIVERY_WORKER_MAX_MEMORY_MIB).
        worker_max_memory_per_child=settings.worker_max_memory_mib * 1024 or None,
        # Task events off unless someone watches: each one is a publish to Redis (and, in
        # kombu, a new client) from the worker's consumer loop, and they were the largest cost
        # of a light portal's confirmation (docs/benchmarks.md). Flower, while it runs, turns
        # them on in every worker (its `enable_events`, every few seconds); `celery worker -E`
        # keeps them on always. The worker's own flush triggers send no `task-sent` event
        # (one more publish per trigger); the producer helper's tasks still do.
        worker_send_task_events=False,
        task_send_sent_event=False,
        # Two queues named for their work (declared in worker/transport/config.py). The worker
        # consumes both, in rotation, so a flood of confirmations on `celery` never starves
        # `flush`. Large fleets can also run dedicated `-Q flush` workers.
        task_default_queue=INGEST_QUEUE,
        task_routes={
            FLUSH_TASK: {"queue": FLUSH_QUEUE},
            FLUSH_TICK_TASK: {"queue": FLUSH_QUEUE},
            SWEEP_TASK: {"queue": FLUSH_QUEUE},
        },
        # A flush is one HTTP call, then at most one token refresh, each at its limit (soft);
        # anything far longer is stuck (hard). Settings validation keeps Redis's visibility
        # timeout above the hard limit.
        task_soft_time_limit=settings.task_time_limit_s - 30,
        task_time_limit=settings.task_time_limit_s,
        # Re-trigger groups whose flush trigger was lost or whose lease expired.
        beat_schedule={
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": timedelta(seconds=settings.sweep_interval_s),
                "options": {
                    "queue": FLUSH_QUEUE,
                    "expires": max(5.0, 5 * settings.sweep_interval_s),
                },
            }
        },
        beat_max_loop_interval=settings.sweep_interval_s,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )

    _connect_signals(settings)
    return app


def _connect_signals(settings: Settings) -> None:
    """What a worker and beat do at start: logs through the redacting pipeline from the first
    line, Sentry when set, and the checks that refuse to start (kombu's release, token keys)."""

    def setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
        """Celery's own log records go through our redacting structlog pipeline, at `-l`'s
        level."""
        level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
        configure_logging(settings.log_format, str(level or "WARNING"))

    signals.setup_logging.connect(setup_logging, weak=False)

    def early_logging(options: dict[str, Any] | None = None, **_: Any) -> None:
        """A worker logs before Celery's setup_logging (Sentry's start, the token-key check at
        worker_init): the same pipeline, at `-l`'s level, from the first line on, so
        DELIVERY_LOG_FORMAT=json gives JSON only. Celery's setup_logging redoes it later."""
        setup_logging((options or {}).get("loglevel"))

    # connected before start_error_tracking: receivers run in the order they were connected
    signals.celeryd_init.connect(early_logging, weak=False)

    def start_error_tracking(**_: Any) -> None:
        """Sentry for the worker and beat when SENTRY_DSN is set (secrets masked)."""
        from worker.ops import sentry as tracking

        tracking.init(settings)

    signals.celeryd_init.connect(start_error_tracking, weak=False)
    signals.beat_init.connect(start_error_tracking, weak=False)

    def check_kombu(**_: Any) -> None:
        """The patched transport relies on kombu's internals as the tested release has them."""
        kombu_redis.require_tested_kombu()

    signals.worker_init.connect(check_kombu, weak=False)

    def check_token_keys(**_: Any) -> None:
        """A worker that cannot read the stored tokens refuses to start
        (worker/portals/keyring.py)."""
        from worker.portals.keyring import startup_check

        startup_check(settings)

    signals.worker_init.connect(check_token_keys, weak=False)
