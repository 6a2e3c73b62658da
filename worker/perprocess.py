"""One object per process and key: connections and sessions must not cross a fork.

A forked pool child inherits the parent's module state; the first call in the child finds the
pid changed, forgets everything the parent built, and builds its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")

_owner = os.getpid()
_objects: dict[Hashable, Any] = {}


def per_process(key: Hashable, build: Callable[[], T]) -> T:
    """The object built for `key` in this process, building it with `build()` the first time."""
    global _owner
    if _owner != os.getpid():
        _objects.clear()
        _owner = os.getpid()
    if key not in _objects:
        _objects[key] = build()
    return cast(T, _objects[key])
