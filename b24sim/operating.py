"""Per-method execution-time ("operating") accounting (``limits.md``).

The time a method spent is summed over ten minutes counted from the first call in the oldest
bucket, not aligned to whole minutes: a bucket opens at the first call after the previous one's
``bucket_s`` ran out, and leaves the sum ``n_buckets * bucket_s`` after that first call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class OperatingMeter:
    """Sums operating time in up to ``n_buckets`` buckets of ``bucket_s`` seconds, each opened
    by a call (Unix time)."""

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
        self.window_s = self.bucket_s * n_buckets
        self._clock = clock
        self._buckets: list[list[float]] = []  # [opened at (its first call), seconds summed]
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        self._buckets = [b for b in self._buckets if b[0] + self.window_s > now]

    def _reset_at(self, now: float) -> float:
        """When the window sum is back within the limit (else when the newest bucket leaves)."""
        if not self._buckets:
            return now + self.window_s
        total = sum(amount for _, amount in self._buckets)
        for opened, amount in self._buckets:
            total -= amount
            if total <= self.limit_s:
                return opened + self.window_s
        return self._buckets[-1][0] + self.window_s

    def check(self) -> tuple[bool, float, float]:
        """(blocked, operating sum, operating_reset_at) as of now."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            total = sum(amount for _, amount in self._buckets)
            return total > self.limit_s, total, self._reset_at(now)

    def add(self, amount: float) -> tuple[float, float]:
        """Add ``amount`` seconds; return (operating sum, operating_reset_at)."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            if self._buckets and now < self._buckets[-1][0] + self.bucket_s:
                self._buckets[-1][1] += amount
            else:
                self._buckets.append([now, amount])
            return sum(amount for _, amount in self._buckets), self._reset_at(now)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
