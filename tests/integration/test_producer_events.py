"""The producer helper announces each task with a `task-sent` event (what Flower shows of the
producer side): a real event receiver on the suite's Redis sees each task's name, id and queue,
and no token, also for a task sent with the producer's raw `app.send_task`."""

from __future__ import annotations

import threading
from typing import Any

import redis
from celery.events.receiver import EventReceiver

from b24sim import PortalConfig, Simulator
from tests.harness import confirmation, producer, wait_for


def test_the_producer_sends_task_sent_events(
    redis_url: str, r: redis.Redis, sim: Simulator
) -> None:
    p = producer(redis_url)
    seen: dict[str, dict[str, Any]] = {}
    receivers: list[EventReceiver] = []

    def listen() -> None:
        with p.app.connection_for_read() as conn:
            handlers = {"task-sent": lambda event: seen.setdefault(event["uuid"], event)}
            receivers.append(p.app.events.Receiver(conn, handlers=handlers))
            receivers[0].capture(limit=None, timeout=None, wakeup=False)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        wait_for(lambda: r.pubsub_numpat() > 0, what="the receiver's subscription")
        creds = sim.add_portal(PortalConfig(member_id="p1")).as_register_kwargs()
        task_id = p.confirm(**confirmation("p1", 1))
        reg_id = p.register_portal(**creds)
        raw_id = p.app.send_task("portal.register", kwargs=creds).id
        auth = f"access_token={creds['access_token']}"
        odd_id = p.app.send_task(
            "delivery.confirm", kwargs={**confirmation("p1", 2), "auth": auth}
        ).id
        ids = {task_id, reg_id, raw_id, odd_id}
        wait_for(lambda: ids <= seen.keys(), what="four task-sent events")
    finally:
        if receivers:
            receivers[0].should_stop = True
        thread.join(10)
        p.close()
    assert seen[task_id]["name"] == "delivery.confirm" and seen[task_id]["queue"] == "celery"
    assert seen[reg_id]["name"] == "portal.register"
    for sent in (reg_id, raw_id, odd_id):
        assert creds["access_token"] not in repr(seen[sent])
        assert creds["refresh_token"] not in repr(seen[sent])
    assert "***" in seen[raw_id]["kwargs"] and "channel-123" in seen[odd_id]["kwargs"]
