"""Queue and task names: the one place they are spelled.

The public ones (`delivery.confirm`, `portal.register`, the `celery` queue) are part of the
contract producers rely on; the others are internal and may change.
"""

from __future__ import annotations

#: Producers send to Celery's default queue; flushes and the sweep have a queue of their own.
INGEST_QUEUE = "celery"
FLUSH_QUEUE = "flush"

CONFIRM_TASK = "delivery.confirm"
CONFIRM_MANY_TASK = "delivery.confirm_many"
REGISTER_TASK = "portal.register"
SENT_TASK = "delivery.sent"
DELIVERED_TASK = "delivery.delivered"
FLUSH_TASK = "delivery.flush"
FLUSH_TICK_TASK = "delivery.flush_tick"
SWEEP_TASK = "delivery.sweep"
