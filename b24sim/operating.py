"""Per-method execution-time ("operating") accounting over N time buckets (``limits.md``)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class OperatingMeter:
    """Sums operating time in ``n_buckets`` buckets of ``bucket_s`` seconds (Unix time)."""

    def __init__(
        self,
        limit_s: float,
        bucket_s: float = 60.0,
        n_buckets: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if bucket_s <= 0 or n_buckets < 1:
            raise ValueError("bucket_s must be > 0 and n_buckets >= 1")
        self.limit_s = float(limit_s)
        self.bucket_s = float(bucket_s)
        self.n_buckets = n_buckets
        self._clock = clock
        self._buckets: dict[int, float] = {}
        self._lock = threading.Lock()

    def _index(self, now: float) -> int:
        return math.floor(now / self.bucket_s)

    def _prune(self, now: float) -> None:
        oldest = self._index(now) - self.n_buckets + 1
        for k in [k for k in self._buckets if k < oldest]:
            del self._buckets[k]

    def _reset_at(self, now: float) -> float:
        """When the window sum is back within the limit (else when the oldest bucket leaves)."""
        keys = sorted(self._buckets)
        if not keys:
            return (self._index(now) + self.n_buckets) * self.bucket_s
        total = sum(self._buckets.values())
        for k in keys:
            leave = (k + self.n_buckets) * self.bucket_s
            total -= self._buckets[k]
            if total <= self.limit_s:
                return leave
        return (keys[-1] + self.n_buckets) * self.bucket_s

    def check(self) -> tuple[bool, float, float]:
        """(blocked, operating sum, operating_reset_at) as of now."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            total = sum(self._buckets.values())
            return total > self.limit_s, total, self._reset_at(now)

    def add(self, amount: float) -> tuple[float, float]:
        """Add ``amount`` seconds; return (operating sum, operating_reset_at)."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            idx = self._index(now)
            self._buckets[idx] = self._buckets.get(idx, 0.0) + amount
            return sum(self._buckets.values()), self._reset_at(now)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
