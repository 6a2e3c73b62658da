"""Errors to Sentry (optional): sentry-sdk's Celery integration when SENTRY_DSN is set.

Every event passes the one redaction (worker/ops/redaction.py `redact`, its one list of secret
names) in `before_send`: secret-named keys are masked wherever they sit (exception values,
breadcrumbs, extra, contexts) and `access_token=...`-shaped text inside strings too. Local
variables are not sent at all (a token held in a variable with an innocent name would otherwise
reach the tracker); the SDK's own scrubber and its default of no personal data stay on.
Needs the `sentry` extra: `pip install 'b24-delivery[worker,sentry]'`.
"""

from __future__ import annotations

from typing import Any

from worker.errors import SettingsError
from worker.ops.redaction import redact
from worker.settings import Settings


def before_send(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    """The event with every secret masked, as the logs mask them."""
    clean: dict[str, Any] = redact(event)
    return clean


def init(settings: Settings, **options: Any) -> bool:
    """Start the SDK when SENTRY_DSN is set (True), else do nothing (False).

    `options` go to `sentry_sdk.init` (a test passes its recording `transport`).
    """
    if not settings.sentry_dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration
    except ImportError:
        raise SettingsError(
            "SENTRY_DSN is set but sentry-sdk is not installed: "
            "pip install 'b24-delivery[worker,sentry]'"
        ) from None
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        integrations=[CeleryIntegration(monitor_beat_tasks=False)],
        before_send=before_send,  # type: ignore[arg-type]
        before_breadcrumb=lambda crumb, _hint: redact(crumb),
        include_local_variables=False,  # personal data stays off too: the SDK's default
        **options,
    )
    return True
