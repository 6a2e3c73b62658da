"""What every subcommand shares: settings, a Redis client, JSON in and out, user errors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import redis

    from worker.settings import Settings
    from worker.store.keys import Keys

#: the exit status of a user's mistake (argparse uses it for bad arguments too)
USAGE_ERROR = 2


class UserError(Exception):
    """A mistake the user can fix: printed as one line to stderr, exit 2."""


class Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def fail(message: str) -> int:
    sys.stderr.write(f"b24-delivery: {message}\n")
    return USAGE_ERROR


def warn(message: str) -> None:
    """One warning line on stderr; the command goes on (its exit status is not changed)."""
    sys.stderr.write(f"b24-delivery: warning: {message}\n")


def emit(record: Any) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def settings() -> Settings:
    """The validated settings from the environment (a SettingsError becomes one line, exit 2)."""
    from worker.settings import Settings

    return Settings.from_env()


def connect(s: Settings) -> redis.Redis:
    """A Redis client that fails fast (a clear error, not a hang) when Redis is down."""
    from worker.transport.sentinel import connect as connect_state

    client = connect_state(s.redis_url, s.redis_sentinel_master, timeout_s=10)
    client.ping()
    return client


def keys(s: Settings) -> Keys:
    from worker.store.keys import Keys

    return Keys(s.key_prefix)


def broker_url(s: Settings) -> str:
    """Where producers send tasks: CELERY_BROKER_URL, else the state Redis (the default broker)."""
    return s.broker


def read_json_object(what: str) -> dict[str, Any]:
    """A JSON object from stdin; refuses an interactive terminal instead of waiting on it."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError(f"{what}: pipe a JSON object on stdin")
    raw = sys.stdin.read()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise UserError(f"{what}: stdin is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise UserError(f"{what}: stdin must hold a JSON object, not {type(value).__name__}")
    return value


def known_portal(client: redis.Redis, k: Keys, member_id: str) -> None:
    if not client.sismember(k.portals, member_id):
        raise UserError(f"unknown portal {member_id!r} (see `b24-delivery portals`)")
