"""Sentinel addresses: kombu's URL form parsed as kombu reads it, the broker's sentinel
transport carrying the same reconnect patch as the Redis one."""

from __future__ import annotations

import pytest
import redis

from worker.transport.sentinel import SentinelAddress, parse, transport_options


def test_kombus_form_is_parsed_as_kombu_reads_it() -> None:
    url = "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/0"
    address = parse(url)
    assert address == SentinelAddress(
        [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)], 0, None, "s3cret"
    )
    assert "s3cret" not in repr(address)
    assert parse("sentinel://a:1/2;sentinel://b:2").db == 2, "the first address names the db"


@pytest.mark.parametrize(
    "url",
    [
        "sentinel://a:1/0;sentinel://b:2/3",  # two databases: kombu would use the first
        "sentinel://a:1;redis://b:2",
        "sentinel://:1",
        "sentinel://a:1/zero",
    ],
)
def test_malformed_sentinel_lists_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"sentinel|database"):
        parse(url)


def test_the_broker_gets_the_master_name_only_for_sentinel_urls() -> None:
    assert transport_options("sentinel://a:1/0", "mymaster") == {"master_name": "mymaster"}
    assert transport_options("redis://a:1/0", "mymaster") == {}


def test_the_sentinel_channel_carries_the_reconnect_patch() -> None:
    from kombu.transport import redis as kombu_redis

    from worker.transport.kombu_redis.channel import QoS
    from worker.transport.kombu_redis.sentinel import SentinelChannel, SentinelTransport

    assert SentinelTransport.Channel is SentinelChannel
    assert issubclass(SentinelChannel, kombu_redis.SentinelChannel)
    assert SentinelChannel.QoS is QoS
    assert "master_name" in SentinelChannel.from_transport_options
    channel = SentinelChannel.__new__(SentinelChannel)
    channel.connection = None
    with pytest.raises(redis.ConnectionError):
        channel._connparams()


def test_the_app_maps_sentinel_urls_to_the_patched_transport() -> None:
    from kombu.transport import TRANSPORT_ALIASES

    from worker.transport import kombu_redis

    kombu_redis.install()
    patched = "worker.transport.kombu_redis.sentinel:SentinelTransport"
    assert TRANSPORT_ALIASES["sentinel"] == patched
