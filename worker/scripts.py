"""Load the Lua scripts beside this module. Each is run as common + limiter + its own file, so
shared helpers are written once and every multi-key change stays one atomic script."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis import Redis
from redis.commands.core import Script

_PRELUDE = ("common.lua", "limiter.lua")


@cache
def source(name: str) -> str:
    lua = resources.files("worker") / "lua"
    return "\n".join((lua / part).read_text() for part in (*_PRELUDE, f"{name}.lua"))


def script(redis: Redis, name: str) -> Script:
    """A registered script (EVALSHA, falling back to EVAL after a Redis restart)."""
    return redis.register_script(source(name))
