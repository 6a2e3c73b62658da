"""The one clock for every stored time: Redis server time (`TIME`).

The Lua scripts read the same clock, so times written from Python and from a script compare
without skew between the fleet's machines.
"""

from __future__ import annotations

from redis import Redis


def server_time(redis: Redis) -> float:
    """Seconds since the epoch, by the Redis server's clock."""
    seconds, micros = redis.time()
    return float(seconds) + micros / 1_000_000
