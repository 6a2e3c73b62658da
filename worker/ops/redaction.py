"""Masking secrets in any value: what logs, task events and operator records show.

Pure (no logging library), so the producer helper masks its task events with the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SECRET_KEYS = frozenset(
    {"access_token", "refresh_token", "client_secret", "auth", "authorization", "password"}
)
MASK = "***"
# key=value (query strings, reprs) and "key": "value" (JSON, dict reprs) forms inside text
_SECRET_IN_TEXT = re.compile(
    r"""(?P<key>["']?\b(?:access_token|refresh_token|client_secret|auth)\b["']?\s*[:=]\s*["']?)"""
    r"""(?P<value>[^"'&\s,;}\]]+)""",
    re.IGNORECASE,
)


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of `value` with secret-named keys masked and secrets inside strings masked."""
    if _depth > 20:
        return MASK
    if isinstance(value, str):
        return _SECRET_IN_TEXT.sub(lambda m: m.group("key") + MASK, value)
    if isinstance(value, Mapping):
        return {
            k: MASK if str(k).lower() in SECRET_KEYS else redact(v, _depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, BaseException):
        return redact(repr(value), _depth + 1)
    return value
