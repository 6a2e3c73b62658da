"""Bitrix24 open-line delivery confirmations, batched by a fleet of Celery workers.

`celery -A worker ...` finds the app here as `worker.app`.
"""

from worker.app import app, settings

__all__ = ["app", "settings"]
