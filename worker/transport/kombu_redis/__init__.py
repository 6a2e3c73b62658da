"""kombu's Redis transport, patched: the one place that depends on kombu's internals.

- `channel.py`: the Redis channel survives a Redis restart, and fetches each message with the
  reliable fetch (its Lua: `worker/store/lua/broker_fetch.lua`).
- `recovery.py`: a dead consumer's reserved messages go back within seconds
  (`worker/store/lua/broker_restore.lua`).
- `sentinel.py`: the same patch on kombu's sentinel transport.
- `pin.py`: the kombu release these were written and tested against; a worker on another one
  refuses to start.
- `install()` (here): `redis://`, `rediss://` and `sentinel://` broker URLs use the patched
  transports in this process.

Everything else in the project reaches kombu through its public API. Upgrading kombu means
reading this package against the new release, running the suite, then moving the pin.
"""

from __future__ import annotations

import kombu.transport
from kombu.transport import TRANSPORT_ALIASES

from worker.transport.kombu_redis.pin import TESTED_KOMBU, require_tested_kombu, untested_kombu

__all__ = ["TESTED_KOMBU", "install", "require_tested_kombu", "untested_kombu"]

#: broker URL scheme -> the patched transport class
PATCHED = {
    "redis": "worker.transport.kombu_redis.channel:Transport",
    "rediss": "worker.transport.kombu_redis.channel:Transport",
    # sentinel:// (REDIS_URL with REDIS_SENTINEL_MASTER): kombu's sentinel transport, same patch
    "sentinel": "worker.transport.kombu_redis.sentinel:SentinelTransport",
}


def install() -> None:
    """redis:// URLs in this process use kombu's Redis transport patched to survive a Redis
    restart; an alias keeps the URL, and so every log line, as operators wrote it."""
    for scheme, transport in PATCHED.items():
        TRANSPORT_ALIASES[scheme] = transport
        # kombu caches each alias's class on first use: a connection made before the app was
        # built (a producer in the same process) must not pin the unpatched one
        kombu.transport._transport_cache.pop(scheme, None)  # type: ignore[attr-defined]
