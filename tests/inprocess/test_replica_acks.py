"""DELIVERY_REPLICA_ACKS on a real primary and replica: the ingest and its WAIT share one
connection, so an acknowledged ingest is on the replica; without a replica it is not
acknowledged, but counted, within the timeout."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from statistics import median

import pytest

from devtools.redis_sentinel import SentinelCluster
from tests.harness import sentinel_cluster
from tests.inprocess.conftest import GROUP, SentTasks, element
from tests.inprocess.test_receipts import receipt_payload, sent_payload
from worker.ingest import receipt_payloads, receipts
from worker.runtime import Runtime
from worker.settings import Settings
from worker.store.keys import Keys


@pytest.fixture
def pair() -> Iterator[SentinelCluster]:
    yield from sentinel_cluster("for a primary and a replica", sentinel_count=0)


def test_an_acknowledged_ingest_is_on_the_replica(
    pair: SentinelCluster, settings: Settings, sent: SentTasks
) -> None:
    primary, replica = pair.nodes["primary"], pair.nodes["replica"]

    def make(acks: int) -> Runtime:
        chosen = settings.with_overrides(replica_acks=acks)
        return Runtime.create(chosen, sent, client=primary.client(timeout_s=5))

    acked, plain = make(1), make(0)
    timings: dict[str, list[float]] = {"acks=1": [], "acks=0": []}
    for n in range(1, 201):
        rt, label = (acked, "acks=1") if n % 2 else (plain, "acks=0")
        started = time.perf_counter()
        ingested = rt.buffer.ingest(GROUP, str(n), element(n))
        timings[label].append(time.perf_counter() - started)
        assert ingested.added and ingested.replicated
        if rt is acked:  # no wait here: WAIT already had the replica acknowledge it
            assert replica.client().hexists(Keys().items(GROUP), str(n))
    print(
        "\n[replica acks] ingest median "
        + ", ".join(f"{k} {1000 * median(v):.3f} ms" for k, v in timings.items())
    )

    pair.signal("replica", signal.SIGSTOP)
    try:
        primary.client().client_kill_filter(_type="replica")
        started = time.perf_counter()
        ingested = acked.buffer.ingest(GROUP, "999", element(999))
        waited = time.perf_counter() - started
    finally:
        pair.signal("replica", signal.SIGCONT)
    assert ingested.added and not ingested.replicated
    assert settings.replica_timeout_ms / 1000 <= waited < 2, "WAIT gave up at its timeout"
    assert primary.client().hget(Keys().stats, "replica_wait_timeouts") == b"1"


def test_receipts_wait_for_the_replica_even_when_a_repeat_writes_nothing(
    pair: SentinelCluster, settings: Settings, sent: SentTasks
) -> None:
    """`delivery.sent` and `delivery.delivered` WAIT as an ingest does, and a repeat (the task's
    retry) waits again. A repeated receipt whose ids all wait already writes nothing, and WAIT
    answers for its own connection's writes; run on a pooled connection that last wrote before
    the replica stopped, its WAIT must still not report the first run replicated (on Redis 7.0
    a script's WAIT covers every write before it; a server where it does not fails here)."""
    primary, replica = pair.nodes["primary"], pair.nodes["replica"]

    def make() -> Runtime:  # its own connection pool: a retry in another process
        chosen = settings.with_overrides(replica_acks=1)
        return Runtime.create(chosen, sent, client=primary.client(timeout_s=5))

    keys = Keys().receipt_keys("p1")
    early, first_run = make(), make()
    payload = sent_payload(85911, "ext-1")
    done = receipts.record_sent(early, receipt_payloads.sent(payload), payload)
    assert done.kind == "kept" and done.replicated
    assert replica.client().hexists(keys["records_key"], "myconnector:85911")

    pair.signal("replica", signal.SIGSTOP)
    try:
        receipt = receipt_payload("never-sent")
        first = receipts.receive(first_run, receipt_payloads.receipt(receipt), receipt)
        # the repeat on the connection that last wrote before the replica stopped
        again = receipts.receive(early, receipt_payloads.receipt(receipt), receipt)
    finally:
        pair.signal("replica", signal.SIGCONT)
    assert first.counts == {"waiting": 1} and not first.replicated
    assert again.counts == {"waiting": 1} and not again.replicated, "the repeat's WAIT counted"
    assert primary.client().hget(Keys().stats, "replica_wait_timeouts") == b"2"
