"""The state Redis goes away under the public tasks that ingest while the broker stays up: each
task goes back to its queue (a task that raised would be acknowledged, its confirmations gone)
and runs again once Redis is back. Nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from b24sim import PortalConfig, Simulator
from devtools.redis_local import LocalRedis
from tests.harness import Fleet, confirmation, delivered_ids, producer, wait_for
from tests.reliability.util import alive, wait_ready
from worker.store.keys import Keys


def _requeued(log: str, task: str) -> bool:
    return any(f"{task}[" in line and "reject requeue=True" in line for line in log.splitlines())


@pytest.mark.timeout(180)
def test_public_tasks_requeue_while_the_state_redis_is_down(sim: Simulator, tmp_path: Path) -> None:
    state = LocalRedis().start()
    broker = LocalRedis().start()  # a broker of its own: only the state store goes away
    fleet = Fleet(state.url, sim, tmp_path, env={"CELERY_BROKER_URL": broker.url})
    try:
        worker = fleet.spawn(concurrency=2, beat=True)
        wait_ready([worker])
        p = producer(broker.url)
        first = sim.add_portal(PortalConfig(member_id="rq"))
        p.register_portal(**first.as_register_kwargs())
        client = redis.Redis.from_url(state.url)
        wait_for(lambda: client.sismember(Keys("b24d").portals, "rq"), 30, what="registration")
        client.close()

        state.stop()  # graceful: the registration is on disk (AOF)
        many = [confirmation("rq", i, line=1 + i % 3) for i in range(1, 41)]
        p.confirm_many(many)
        p.confirm(**confirmation("rq", 41))
        late = sim.add_portal(PortalConfig(member_id="rq2"))
        p.register_portal(**late.as_register_kwargs())
        p.confirm(**confirmation("rq2", 1))
        p.close()
        # each public task met the outage at least once, and went back to its queue
        tasks = ("delivery.confirm_many", "delivery.confirm", "portal.register")
        wait_for(
            lambda: all(_requeued(worker.log(), t) for t in tasks) or not alive(worker),
            timeout_s=60,
            what="each public task to be requeued",
        )
        assert alive(worker), worker.log()[-3000:]

        state.start()
        wait_for(
            lambda: (
                sorted(delivered_ids(sim, "rq")) == list(range(1, 42))
                and delivered_ids(sim, "rq2") == [1]
            ),
            timeout_s=60,
            what="every confirmation delivered once Redis is back",
        )
        print(
            f"\n[state redis down] confirm_many (40), confirm, register + confirm all requeued "
            f"and delivered: rq {len(delivered_ids(sim, 'rq'))}/41, rq2 1/1"
        )
    finally:
        fleet.stop()
        state.close()
        broker.close()
