"""The address classes and the URL rule, as pure rules (worker/net/addresses.py, trust.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.net.addresses import classify, parse_networks
from worker.net.trust import url_problem

ALL = frozenset({"public", "private", "loopback"})
DEV = frozenset({"public", "loopback"})
PUBLIC = frozenset({"public"})


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", "public"),
        ("2606:4700:4700::1111", "public"),
        ("172.32.0.1", "public"),  # just outside 172.16/12
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT
        ("fd12:3456::1", "private"),  # unique local
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:10.0.0.1", "private"),
        ("169.254.169.254", "forbidden"),  # link-local: cloud metadata
        ("fe80::1", "forbidden"),
        ("fd00:ec2::254", "forbidden"),  # AWS metadata over IPv6, inside fc00::/7
        ("100.100.100.200", "forbidden"),  # Alibaba metadata, inside CGNAT
        ("168.63.129.16", "forbidden"),  # Azure wire server, a public address
        ("0.0.0.0", "forbidden"),
        ("::", "forbidden"),
        ("::10.0.0.1", "forbidden"),  # IPv4-compatible
        ("224.0.0.1", "forbidden"),
        ("ff02::1", "forbidden"),
        ("255.255.255.255", "forbidden"),
        ("240.0.0.1", "forbidden"),
        ("192.0.2.10", "forbidden"),  # documentation
        ("64:ff9b::a00:1", "forbidden"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", "forbidden"),  # 6to4 of 10.0.0.1
        ("::ffff:0:0", "forbidden"),  # IPv4-mapped 0.0.0.0
        ("::ffff:169.254.169.254", "forbidden"),  # IPv4-mapped metadata
        ("::ffff:0:a00:1", "forbidden"),  # SIIT IPv4-translated 10.0.0.1
        ("::ffff:0:808:808", "forbidden"),  # ... and 8.8.8.8: a translator decides
        ("3fff::1", "forbidden"),  # documentation, RFC 9637
        ("3fff:fff:ffff::1", "forbidden"),  # the end of 3fff::/20
        ("3fff:1000::1", "public"),  # just past it
    ],
)
def test_every_address_has_one_class(address: str, kind: str) -> None:
    assert classify(ipaddress.ip_address(address)) == kind


def test_networks_parse_and_reject_unknown_names() -> None:
    assert parse_networks(" Public ,loopback") == DEV
    for bad in ("", "public,", "internet", "public;private"):
        with pytest.raises(ValueError, match="expected names"):
            parse_networks(bad)


@pytest.mark.parametrize(
    ("url", "networks", "problem"),
    [
        ("https://p.example/rest/", PUBLIC, None),
        ("https://10.0.0.5/rest/", PUBLIC, "is private"),
        ("https://10.0.0.5/rest/", ALL, None),
        ("https://169.254.169.254/latest/", ALL, "never receives tokens"),
        ("https://[fe80::1]/rest/", ALL, "never receives tokens"),
        ("https://127.0.0.1/rest/", PUBLIC, "is loopback"),
        ("http://127.0.0.1:8080/rest/", DEV, None),
        ("http://localhost/rest/", DEV, None),
        ("http://[::1]:9/rest/", DEV, None),
        ("http://127.0.0.1:8080/rest/", PUBLIC, "when loopback is allowed"),
        ("http://localhost/rest/", PUBLIC, "when loopback is allowed"),
        ("http://p.example/rest/", DEV, "must use https://"),
        ("http://10.0.0.5/rest/", ALL, "must use https://"),
        ("http://127.0.0.1.nip.io/rest/", DEV, "must use https://"),
        ("https://u:p@p.example/rest/", PUBLIC, "credentials"),
        ("ftp://p.example/", PUBLIC, "http(s)"),
        ("https://p.example:99999/", PUBLIC, "absolute URL"),
    ],
)
def test_the_url_rule(url: str, networks: frozenset[str], problem: str | None) -> None:
    found = url_problem(url, networks)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_an_ipv4_mapped_address_is_in_the_class_of_the_address_it_carries(raw: int) -> None:
    """::ffff:a.b.c.d (::ffff:0:0/96) is a.b.c.d on the wire: never public unless a.b.c.d is."""
    v4 = ipaddress.IPv4Address(raw)
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    assert classify(mapped) == classify(v4)


@given(st.integers(min_value=0, max_value=2**108 - 1))
def test_the_ipv6_documentation_range_is_never_public(low: int) -> None:
    """3fff::/20 (RFC 9637) is documentation: no endpoint lives there."""
    address = ipaddress.IPv6Address((0x3FFF << 112) | low)
    assert classify(address) == "forbidden"


@given(st.text(max_size=200), st.sampled_from([ALL, DEV, PUBLIC]))
def test_the_url_rule_answers_any_text(url: str, networks: frozenset[str]) -> None:
    found = url_problem(url, networks)
    assert found is None or isinstance(found, str)
