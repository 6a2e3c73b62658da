"""The network policy as pure rules: which addresses may receive a token, and the URL rule."""

from __future__ import annotations

import ipaddress

import pytest

from worker.net.addresses import check_url, classify, parse_networks

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
    found = check_url(url, networks)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
