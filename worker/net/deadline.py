"""A total deadline for one HTTP call, whatever the pace of the bytes.

A socket's timeout bounds one read, not a call: a peer that sends a byte every half second (in
its status line, its headers or its body) keeps every read short and the call open for as long
as it likes. So a call that must end by a deadline runs inside `bounded(seconds)`: the guarded
connections (worker/net/guard.py) attach their socket to the calling thread's deadline when they
connect and when they wait for an answer, and a timer shuts those sockets down when the deadline
passes. The blocked read then fails at once, and the reader sees `Deadline.expired`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


class Deadline:
    """One call's deadline: shuts down the sockets attached to it when it passes."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.name = "b24d-call-deadline"

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

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def start(self) -> None:
        self._timer.start()

    def close(self) -> None:
        """The call ended: the timer stops and no socket is touched any more."""
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


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
