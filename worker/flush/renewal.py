"""Lease renewal: one thread per process renews the leases of every flush the process runs.

A lease is short (DELIVERY_LEASE_TTL_S), so a killed flusher's items return within seconds; a
live call that takes longer keeps its lease by renewal, every third of the TTL. A flush holds
its leases for the length of its call (`Renewer.holding`); the process's one renewal thread
renews each holding a third of the TTL after it began and every third after that, and drops a
lease a renewal finds gone. Most calls end long before their first renewal, so the thread
mostly sleeps: starting and joining a thread for every flush cost more CPU than a light
portal's whole HTTP call (docs/benchmarks.md).

The thread is built lazily, once per process (a forked pool child builds its own: threads do
not survive a fork), and renews outside its lock, so a flush never waits on a renewal.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis
import structlog

from worker.perprocess import per_process
from worker.runtime import Runtime
from worker.store.replies import Lease

log = structlog.stdlib.get_logger("worker.flush.renewal")

THREAD_NAME = "b24d-lease-renewal"


#: leases -> those still ours (extended)
Renew = Callable[[list[Lease]], list[Lease]]


@dataclass
class _Holding:
    leases: list[Lease]
    renew: Renew
    every_s: float
    due: float  # time.monotonic() of the next renewal


class Renewer:
    """Renews every held lease from one thread."""

    def __init__(self) -> None:
        self._held: dict[int, _Holding] = {}
        self._keys = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def holding(self, leases: list[Lease], renew: Renew, every_s: float) -> Iterator[None]:
        """Keep `leases` renewed with `renew` every `every_s` while the block runs."""
        with self._cond:
            key = next(self._keys)
            due = time.monotonic() + every_s
            self._held[key] = _Holding(list(leases), renew, every_s, due)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._held.pop(key, None)

    def held(self) -> int:
        """How many holdings are registered (for the tests)."""
        with self._cond:
            return len(self._held)

    def _due(self) -> list[tuple[int, list[Lease], Renew]]:
        """Wait until some holding is due; those due, their next time set."""
        with self._cond:
            while True:
                now = time.monotonic()
                due = [(k, h) for k, h in self._held.items() if h.due <= now]
                if due:
                    for _, holding in due:
                        holding.due = now + holding.every_s
                    return [(k, list(h.leases), h.renew) for k, h in due]
                soonest = min((h.due for h in self._held.values()), default=None)
                self._cond.wait(None if soonest is None else soonest - now)

    def _run(self) -> None:
        while True:
            for key, leases, renew in self._due():
                try:
                    live = renew(leases)
                except redis.RedisError as exc:  # the next round may reach Redis again
                    log.warning("lease renewal failed", error=type(exc).__name__)
                    continue
                with self._cond:
                    if key in self._held:
                        if live:
                            self._held[key].leases = live
                        else:  # every lease gone: nothing left to renew for this flush
                            del self._held[key]


def renewing(rt: Runtime, leases: list[Lease]) -> contextlib.AbstractContextManager[None]:
    """Keep `leases` renewed every third of DELIVERY_LEASE_TTL_S while the block runs, by this
    process's renewal thread."""
    held = per_process("lease-renewer", Renewer)
    return held.holding(leases, rt.buffer.renew_all, rt.settings.lease_ttl_s / 3)
