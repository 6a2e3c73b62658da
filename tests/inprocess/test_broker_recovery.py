"""The Redis broker's recovery scripts against a real Redis: a fetch records its message under
the consumer's holder id in the same step as the pop; a dead holder's messages go back to the
front of their queue; a live holder's never do."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from worker.store.scripts import script
from worker.transport import kombu_redis
from worker.transport.kombu_redis.channel import Channel
from worker.transport.kombu_redis.recovery import ALIVE_PREFIX, HOLDERS_KEY, restore_orphans


@pytest.fixture
def channel(redis_url: str, r: redis.Redis) -> Iterator[Channel]:
    kombu_redis.install()
    with Connection(redis_url, transport_options={"consumer_ttl": 2}) as conn:
        chan = conn.default_channel
        assert isinstance(chan, Channel)
        queue = Queue("celery", Exchange("celery"), routing_key="celery")
        queue(chan).declare()
        yield chan


def _publish(chan: Channel, body: str) -> None:
    Producer(chan).publish({"n": body}, exchange="celery", routing_key="celery")


def _fetch(r: redis.Redis, chan: Channel, holder: str) -> tuple[str, dict[str, object]] | None:
    keys = {**chan.unacked_keys, "alive_key": ALIVE_PREFIX + holder, "queue_keys": ["celery"]}
    args = {"holder": holder, "now": 1_767_225_600, "heartbeat_ttl_ms": 2000}
    reply = script(r, "broker_fetch")(keys, args)
    if not reply:
        return None
    return reply["queue"], json.loads(reply["message"])


def test_the_fetch_records_the_holder_with_the_pop(r: redis.Redis, channel: Channel) -> None:
    _publish(channel, "one")
    holder = f"test:{uuid.uuid4().hex}"
    fetched = _fetch(r, channel, holder)
    assert fetched is not None and fetched[0] == "celery"
    tag = fetched[1]["properties"]["delivery_tag"]  # type: ignore[index]
    assert r.llen("celery") == 0
    assert r.hget(HOLDERS_KEY, tag) == holder.encode()
    entry = json.loads(r.hget(channel.unacked_key, tag) or b"null")
    assert entry[1:] == ["celery", "celery"], "kombu's own unacked entry: [payload, exchange, key]"
    assert r.zscore(channel.unacked_index_key, tag) is not None
    assert 0 < r.pttl(ALIVE_PREFIX + holder) <= 2000
    assert _fetch(r, channel, holder) is None, "an empty queue answers {}"


def test_a_dead_holders_messages_go_back_and_a_live_ones_stay(
    r: redis.Redis, channel: Channel
) -> None:
    _publish(channel, "dead")
    _publish(channel, "alive")
    dead, live = f"test:{uuid.uuid4().hex}", f"test:{uuid.uuid4().hex}"
    assert _fetch(r, channel, dead) is not None  # its reply "lost": the holder dies
    assert _fetch(r, channel, live) is not None
    assert restore_orphans(channel, r) == 0, "both heartbeats alive: nothing goes back"
    r.delete(ALIVE_PREFIX + dead)  # the heartbeat expired
    assert restore_orphans(channel, r) == 1
    assert r.llen("celery") == 1 and r.hlen(channel.unacked_key) == 1
    back = json.loads(r.lindex("celery", 0) or b"null")
    assert back["headers"]["redelivered"] is True
    assert list(r.hvals(HOLDERS_KEY)) == [live.encode()], "the live holder's record stays"
