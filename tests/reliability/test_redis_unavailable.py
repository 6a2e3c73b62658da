"""No Redis: the producer fails fast with a clear error; a worker keeps retrying, says why, and
works once Redis comes up."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from b24producer import Producer
from b24sim import PortalConfig, Simulator
from devtools.redis_local import LocalRedis, free_port
from tests.harness import Fleet, confirmation, producer, wait_for
from tests.reliability.util import alive, spawn, wait_ready


def test_producer_raises_quickly_when_redis_is_down() -> None:
    port = free_port()
    p = Producer(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is kombu's; the text matters
        p.confirm(**confirmation("p1", 1))
    elapsed = time.monotonic() - started
    p.close()
    text = f"{type(info.value).__name__}: {info.value}"
    print(f"\n[redis down] producer raised after {elapsed:.2f}s: {text[:200]}")
    assert elapsed < 10
    assert re.search(r"connect|refused", text, re.IGNORECASE), text
    assert str(port) in text, "the error names where it tried to connect"


@pytest.mark.timeout(120)
def test_worker_started_before_redis_retries_then_delivers(sim: Simulator, tmp_path: Path) -> None:
    port = free_port()
    server = LocalRedis(port=port)
    fleet = Fleet(server.url, sim, tmp_path)
    try:
        worker = spawn(fleet, concurrency=2, beat=True)
        wait_for(
            lambda: "Cannot connect to redis" in worker.log() or not alive(worker),
            timeout_s=60,
            what="the worker to log why it cannot start",
        )
        assert alive(worker), worker.log()[-3000:]
        line = next(x for x in worker.log().splitlines() if "Cannot connect to redis" in x)
        print(f"\n[redis down] worker says: {line[:240]}")
        assert re.search(r"refused|Error 111", line), line
        server.start()
        wait_ready([worker], timeout_s=60)
        p = producer(server.url)
        p.register_portal(**sim.add_portal(PortalConfig(member_id="late")).as_register_kwargs())
        for i in range(20):
            p.confirm(**confirmation("late", i + 1, line=1 + i % 2))
        p.close()
        wait_for(
            lambda: {int(a.im["message_id"]) for a in sim.accepted("late")} == set(range(1, 21)),
            timeout_s=30,
            what="delivery after Redis came up",
        )
        print("[redis down] worker connected once Redis came up and delivered 20/20")
    finally:
        fleet.stop()
        server.close()
