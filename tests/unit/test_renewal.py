"""The process's one lease-renewal thread (worker/flush/renewal.py), alone: a held lease is
renewed every interval until its flush ends, a lease found gone is dropped, a Redis error is
retried on the next round, and many flushes share the one thread."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import redis

from devtools.procs import wait_for
from worker.flush.renewal import THREAD_NAME, Renewer


class Recorder:
    """A renew function: counts renewals per lease; `gone` leases are not ours any more."""

    def __init__(self, gone: frozenset[str] = frozenset(), fail_first: int = 0) -> None:
        self.calls: Counter[Any] = Counter()
        self.gone = gone
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, leases: list[Any]) -> list[Any]:
        with self.lock:
            self.calls.update(leases)
            if self.fail_first > 0:
                self.fail_first -= 1
                raise redis.ConnectionError("down")
        return [lease for lease in leases if lease not in self.gone]


def test_a_held_lease_is_renewed_until_its_flush_ends() -> None:
    renewer, renew = Renewer(), Recorder()
    with renewer.holding(["a"], renew, every_s=0.05):  # type: ignore[list-item]
        wait_for(lambda: renew.calls["a"] >= 3, 10, "three renewals")
    assert renewer.held() == 0  # released: the thread has nothing left to renew


def test_a_short_flush_is_never_renewed() -> None:
    renewer, renew = Renewer(), Recorder()
    with renewer.holding(["a"], renew, every_s=60):  # type: ignore[list-item]
        pass
    assert renew.calls["a"] == 0 and renewer.held() == 0


def test_a_lease_found_gone_is_dropped_and_the_rest_renewed() -> None:
    renewer, renew = Renewer(), Recorder(gone=frozenset({"gone"}))
    with renewer.holding(["gone", "kept"], renew, every_s=0.05):  # type: ignore[list-item]
        wait_for(lambda: renew.calls["kept"] >= 3, 10, "kept renewed")
        assert renew.calls["gone"] == 1


def test_a_redis_error_is_retried_on_the_next_round() -> None:
    renewer, renew = Renewer(), Recorder(fail_first=2)
    with renewer.holding(["a"], renew, every_s=0.05):  # type: ignore[list-item]
        wait_for(lambda: renew.calls["a"] >= 4, 10, "renewals after the errors")


def test_many_flushes_share_one_thread() -> None:
    renewer, renew = Renewer(), Recorder()
    release = threading.Event()

    def flush(name: str) -> None:
        with renewer.holding([name], renew, every_s=0.05):  # type: ignore[list-item]
            release.wait(10)

    before = sum(1 for t in threading.enumerate() if t.name == THREAD_NAME)
    names = [f"lease-{i}" for i in range(20)]
    threads = [threading.Thread(target=flush, args=(n,)) for n in names]
    for t in threads:
        t.start()
    wait_for(lambda: all(renew.calls[n] >= 2 for n in names), 10, "every lease renewed")
    assert sum(1 for t in threading.enumerate() if t.name == THREAD_NAME) == before + 1
    release.set()
    for t in threads:
        t.join(10)
    assert renewer.held() == 0
