"""worker/net/deadline.py: one watchdog thread per process ends the calls whose deadline passed."""

from __future__ import annotations

import multiprocessing
import socket
import threading

from worker.net import deadline


def _shut_within(sock: socket.socket, seconds: float) -> bool:
    """Whether `sock` reads end-of-stream (it was shut down) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_a_passed_deadline_shuts_its_sockets_and_says_so() -> None:
    a, b = socket.socketpair()
    with a, b, deadline.bounded(0.2) as due:
        deadline.attach(a)
        assert _shut_within(a, 5.0)  # a blocked read ends once the deadline passes
        assert due.expired


def test_a_call_that_ended_in_time_is_never_touched() -> None:
    a, b = socket.socketpair()
    with a, b:
        with deadline.bounded(0.1) as due:
            deadline.attach(a)
        assert not _shut_within(a, 0.4)  # past its deadline (and the watchdog's grain)
        assert not due.expired
        b.sendall(b"x")
        assert a.recv(1) == b"x"


def test_many_threads_each_get_their_own_deadline() -> None:
    ended: dict[int, bool] = {}

    def call(i: int) -> None:
        a, b = socket.socketpair()
        with a, b, deadline.bounded(0.1 if i % 2 else 30.0) as due:
            deadline.attach(a)
            ended[i] = _shut_within(a, 1.0 if i % 2 else 0.3) and due.expired

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert ended == {i: bool(i % 2) for i in range(8)}


def _in_child(out: multiprocessing.queues.Queue[bool]) -> None:
    a, b = socket.socketpair()
    with a, b, deadline.bounded(0.1) as due:
        deadline.attach(a)
        out.put(_shut_within(a, 5.0) and due.expired)


def test_a_forked_child_gets_its_own_watchdog() -> None:
    with deadline.bounded(1.0):  # the parent's watchdog runs (and may hold its lock) at the fork
        pass
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.queues.Queue[bool] = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(out,))
    child.start()
    try:
        assert out.get(timeout=10) is True
    finally:
        child.join(10)
    assert child.exitcode == 0


def test_deadlines_cost_no_thread_each() -> None:
    before = threading.active_count()
    for _ in range(200):
        with deadline.bounded(30.0):
            pass
    assert threading.active_count() <= before + 1  # the one watchdog, at most
