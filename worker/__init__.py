"""Bitrix24 open-line delivery confirmations, batched by a fleet of Celery workers.

`celery -A worker ...` finds the app here as `worker.app`. It is built on first access
(PEP 562) from `get_settings()`, the settings read from the environment then: importing a module
of this package (`worker.flush.policy`, `worker.ops.records`, ...) neither reads the environment nor
builds the app. (`worker.settings` is the module; the process's settings are `get_settings()`.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from worker.settings import Settings

    app: Celery

__all__ = ["app", "get_settings"]

_built: dict[str, Any] = {}


def get_settings() -> Settings:
    """This process's settings, read from the environment once; invalid ones stop it."""
    if "settings" not in _built:
        from worker.errors import SettingsError
        from worker.settings import Settings

        try:
            _built["settings"] = Settings.from_env()
        except SettingsError as error:  # fail fast, with the variable and the rule
            raise SystemExit(f"b24-delivery: invalid configuration: {error}") from None
    settings: Settings = _built["settings"]
    return settings


def __getattr__(name: str) -> Any:
    if name == "app":
        if "app" not in _built:
            from worker.transport.celery_app import create_app

            _built["app"] = create_app(get_settings())
        return _built["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
