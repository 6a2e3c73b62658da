"""Redis Sentinel: the state client through `redis.sentinel`, the broker through kombu's
sentinel transport with the same reconnect patch as the plain Redis one
(worker/transport/kombu_redis/sentinel.py, on worker/transport/kombu_redis/channel.py).

`REDIS_URL=sentinel://h1:26379;sentinel://h2:26379;sentinel://h3:26379/0` (kombu's form: one
`sentinel://` address per sentinel, `;`-separated) with `REDIS_SENTINEL_MASTER=mymaster`. kombu
reads the database number and the master's password from the first address, so this module does
too, and refuses a list whose other addresses name a different database.

After a failover, both clients ask the sentinels for the new master on their next connection:
the state client's `SentinelConnectionPool` on any connection error (and on a READONLY answer
from a demoted master), the broker's channel when Celery reconnects it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SCHEME = "sentinel://"


@dataclass(frozen=True)
class SentinelAddress:
    sentinels: list[tuple[str, int]]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel(url: str) -> bool:
    return url.startswith(SCHEME)


def parse(url: str) -> SentinelAddress:
    """The sentinels, database and master credentials of a kombu-style sentinel URL."""
    sentinels: list[tuple[str, int]] = []
    dbs: list[int | None] = []
    first = None
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        if parts.scheme != "sentinel" or not parts.hostname:
            raise ValueError(f"{part!r} is not a sentinel://host:port address")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"{part!r}: the database must be a number")
        sentinels.append((parts.hostname, parts.port or 26379))
        dbs.append(int(path) if path else None)
        first = first or parts
    assert first is not None  # split() yields at least one part
    db = dbs[0] or 0
    if any(d is not None and d != db for d in dbs[1:]):
        raise ValueError("every sentinel address names the same database (kombu reads the first)")
    return SentinelAddress(
        sentinels,
        db,
        unquote(first.username) if first.username else None,
        unquote(first.password) if first.password else None,
    )


def master_client(url: str, master: str, **options: Any) -> redis.Redis:
    """A client of the current master; it asks the sentinels again after a connection error."""
    address = parse(url)
    timeout = options.get("socket_connect_timeout", 5)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        address.sentinels,
        sentinel_kwargs={"socket_connect_timeout": timeout, "socket_timeout": timeout},
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        master,
        db=address.db,
        username=address.username,
        password=address.password,
        **options,
    )
    return client


def connect(url: str, master: str | None = None, *, timeout_s: float = 30) -> redis.Redis:
    """A client of the state store at `url`: a plain Redis URL, or sentinels and a master."""
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_connect_timeout": min(5, timeout_s),
        "socket_timeout": timeout_s,
        "retry_on_timeout": True,
    }
    if is_sentinel(url):
        if not master:
            raise ValueError("a sentinel:// URL needs REDIS_SENTINEL_MASTER")
        return master_client(url, master, **options)
    return redis.Redis.from_url(url, **options)


def transport_options(redis_url: str, master: str | None) -> dict[str, Any]:
    """Broker transport options a sentinel:// broker URL needs (none for other URLs)."""
    return {"master_name": master} if is_sentinel(redis_url) and master else {}
