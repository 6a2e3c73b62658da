"""A total deadline for one HTTP call, whatever the pace of the bytes.

A socket's timeout bounds one read, not a call: a peer that sends a byte every half second (in
its status line, its headers or its body) keeps every read short and the call open for as long
as it likes. So a call that must end by a deadline runs inside `bounded(seconds)`: the guarded
connections (worker/net/guard.py) attach their socket to the calling thread's deadline when they
connect and when they wait for an answer, and when the deadline passes its sockets are shut
down. The blocked read then fails at once, and the reader sees `Deadline.expired`.

One watchdog thread per process keeps every open deadline in a heap and shuts the sockets of
those that passed (a thread per call cost more CPU than the call's own bookkeeping). It wakes
on a grid of `GRAIN_S`, so a deadline ends at most that much late, and many calls that ended in
time cost it one wake-up together. A forked child starts its own watchdog on first use.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Iterator

#: the watchdog's wake-ups fall on this grid: a deadline ends at most this late
GRAIN_S = 0.05


class Deadline:
    """One call's deadline: shuts down the sockets attached to it when it passes."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining_s(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            if self.expired:
                _shut(sock)
            elif sock not in self._sockets:
                self._sockets.append(sock)

    def expire(self) -> None:
        """The deadline passed: shut down its sockets (nothing, once the call ended)."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def start(self) -> None:
        _watchdog().watch(self)

    def close(self) -> None:
        """The call ended: no socket is touched any more."""
        with self._lock:
            self._done = True
            self._sockets.clear()

    @property
    def closed(self) -> bool:
        return self._done


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """The process's one thread that ends the deadlines that pass."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread = threading.Thread(target=self._run, name="b24d-call-deadlines", daemon=True)
        self._thread.start()

    def watch(self, deadline: Deadline) -> None:
        with self._wake:
            earliest = self._heap[0][0] if self._heap else math.inf
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if deadline.at < earliest:
                self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                due = []
                while self._heap and (self._heap[0][0] <= now or self._heap[0][2].closed):
                    due.append(heapq.heappop(self._heap)[2])
                if due:
                    self._wake.release()  # sockets are shut outside the heap's lock
                    try:
                        for deadline in due:
                            deadline.expire()
                    finally:
                        self._wake.acquire()
                    continue
                if not self._heap:
                    self._wake.wait()
                    continue
                at = math.ceil(self._heap[0][0] / GRAIN_S) * GRAIN_S  # on the grid
                self._wake.wait(max(0.0, at - now))


_dog: _Watchdog | None = None
_dog_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    global _dog
    dog = _dog
    if dog is not None and dog.pid == os.getpid():
        return dog
    with _dog_lock:
        if _dog is None or _dog.pid != os.getpid():  # none yet, or the parent's (forked)
            _dog = _Watchdog()
        return _dog


def _forget_parents_watchdog() -> None:
    """In a forked child: the parent's watchdog thread does not exist here, and its lock may
    have been held by another thread at the fork."""
    global _dog, _dog_lock
    _dog, _dog_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_parents_watchdog)
_local = threading.local()


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[Deadline]:
    """Run a call with a total deadline; the guarded connections made or used in the block (by
    this thread) are shut down when it passes."""
    deadline = Deadline(seconds)
    previous = getattr(_local, "deadline", None)
    _local.deadline = deadline
    deadline.start()
    try:
        yield deadline
    finally:
        deadline.close()
        _local.deadline = previous


def attach(sock: socket.socket | None) -> None:
    """Put `sock` under the calling thread's deadline, if it runs inside `bounded`."""
    current: Deadline | None = getattr(_local, "deadline", None)
    if current is not None:
        current.attach(sock)
