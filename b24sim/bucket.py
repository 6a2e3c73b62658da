"""Leaky bucket request limiter (``limits.md``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class LeakyBucket:
    """Each admitted request adds 1; the level drains by ``rate`` per second.

    A request that would take the level past ``burst`` is rejected and adds nothing.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._level = 0.0
        self._last = clock()
        self._lock = threading.Lock()

    def _drain(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._last) * self.rate)
        self._last = now

    def try_add(self) -> bool:
        with self._lock:
            self._drain(self._clock())
            if self._level + 1.0 > self.burst:
                return False
            self._level += 1.0
            return True

    @property
    def level(self) -> float:
        with self._lock:
            self._drain(self._clock())
            return self._level

    def reset(self) -> None:
        with self._lock:
            self._level = 0.0
            self._last = self._clock()
