"""Masking secrets in any value: what logs, task events and operator records show.

`SECRET_KEYS` is the one list of secret field names. Every place that shows a value uses it
through `redact`: log lines (ours and Celery's, worker/ops/logs.py), task events and so Flower
(`RedactedRequest` in worker/transport/events.py, the tasks the workers send), Sentry
events (worker/ops/sentry.py), rejected-payload records (worker/ops/records.py) and the producer
helper's task events (b24producer). Names match ignoring case, so the install form's `AUTH_ID`
and `REFRESH_ID` are `auth_id` and `refresh_id`; a form key such as `auth[access_token]` is
judged by its last bracketed part.

Pure (no logging library), so the producer helper masks its task events with the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: the names of secret fields, lowercase
SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "client_secret",
        "auth",  # the REST call's token field
        "authorization",
        "password",
        "application_token",  # authenticates Bitrix24's events to the application's handler
        "auth_id",  # the install form's access token (AUTH_ID)
        "refresh_id",  # the install form's refresh token (REFRESH_ID)
    }
)
MASK = "***"
_NAMES = "|".join(sorted(SECRET_KEYS, key=len, reverse=True))
# key=value (query strings, forms, reprs) and "key": "value" (JSON, dict reprs) forms inside
# text; a form key may be bracketed: auth[access_token]=...
_SECRET_IN_TEXT = re.compile(
    rf"""(?P<key>["']?\b(?:{_NAMES})\b\]?["']?\s*[:=]\s*["']?)"""
    r"""(?P<value>[^"'&\s,;}\]]+)""",
    re.IGNORECASE,
)
_BRACKETED = re.compile(r"\[([^\[\]]*)\]\s*$")


def is_secret_key(key: object) -> bool:
    """The name of a secret field (ignoring case; `auth[access_token]` by its last part)."""
    name = str(key).strip().lower()
    if name in SECRET_KEYS:
        return True
    inner = _BRACKETED.search(name)
    return inner is not None and inner.group(1).strip() in SECRET_KEYS


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of `value` with secret-named keys masked and secrets inside strings masked."""
    if _depth > 20:
        return MASK
    if isinstance(value, str):
        return _SECRET_IN_TEXT.sub(lambda m: m.group("key") + MASK, value)
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("utf-8", "replace"), _depth + 1)
    if isinstance(value, Mapping):
        return {k: MASK if is_secret_key(k) else redact(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, BaseException):
        return redact(repr(value), _depth + 1)
    return value
