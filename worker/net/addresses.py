"""Which class an IP address is in: pure rules, no network (worker/net/trust.py applies them).

A portal's `client_endpoint` comes from its own `auth` block, so the portal chooses where the
worker connects. Every address is put in one of four classes; the operator allows some of the
first three with `DELIVERY_ALLOWED_ENDPOINT_NETWORKS` (default `public`):

- `public`: globally routable unicast;
- `private`: RFC 1918 (10/8, 172.16/12, 192.168/16), IPv6 unique-local (fc00::/7) and carrier-grade
  NAT (100.64/10): on-premises portals on a corporate network;
- `loopback`: 127/8 and ::1, for development, tests and the demo;
- `forbidden`: never allowed. Link-local (169.254/16, fe80::/10, where cloud metadata lives),
  the known cloud metadata addresses, multicast, unspecified, broadcast, reserved, documentation
  and benchmarking ranges (IPv6's 2001:db8::/32 and 3fff::/20, RFC 9637), and IPv6 prefixes that
  embed an IPv4 address (NAT64, 6to4, Teredo, SIIT's IPv4-translated ::ffff:0:0:0/96), which could
  reach any IPv4 host behind a translator.

An IPv4-mapped address (::ffff:a.b.c.d, ::ffff:0:0/96) is a.b.c.d on the wire: it is put in the
class of the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NETWORKS = ("public", "private", "loopback")
DEFAULT_NETWORKS = frozenset({"public"})
#: host names that are loopback by definition (RFC 6761); any other name is resolved
LOOPBACK_NAMES = frozenset({"localhost"})

_net = ipaddress.ip_network
#: cloud metadata services outside link-local: AWS IPv6, Alibaba, Azure's wire server, Oracle
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192")
)
_PRIVATE = tuple(
    _net(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_FORBIDDEN = tuple(
    _net(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "169.254.0.0/16",  # link-local: cloud metadata
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",  # benchmarking
        "192.88.99.0/24",  # 6to4 relay anycast
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/96",  # unspecified and IPv4-compatible (deprecated)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
        "64:ff9b::/96",  # NAT64: embeds an IPv4 address
        "64:ff9b:1::/48",
        "2002::/16",  # 6to4: embeds an IPv4 address
        "2001::/32",  # Teredo: embeds an IPv4 address
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "::ffff:0:0:0/96",  # SIIT IPv4-translated: embeds an IPv4 address
        "100::/64",  # discard
    )
)


def parse_networks(raw: str) -> frozenset[str]:
    """`public,loopback` as a set; ValueError on an unknown or empty entry."""
    names = [part.strip().lower() for part in raw.split(",")]
    if any(name not in NETWORKS for name in names):
        raise ValueError(f"expected names from {', '.join(NETWORKS)}, got {raw!r}")
    return frozenset(names)


def canonical(networks: Iterable[str]) -> str:
    """The set written back in a fixed order, for settings and logs."""
    chosen = set(networks)
    return ",".join(n for n in NETWORKS if n in chosen)


def classify(address: IPAddress) -> str:
    """`public`, `private`, `loopback` or `forbidden`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:a.b.c.d is a.b.c.d on the wire
    if address in METADATA:
        return "forbidden"
    if address.is_loopback:
        return "loopback"
    if any(address in net for net in _FORBIDDEN):
        return "forbidden"
    if any(address in net for net in _PRIVATE):
        return "private"
    if address.is_global and not address.is_multicast:
        return "public"
    return "forbidden"


def address_problem(address: IPAddress, networks: frozenset[str]) -> str | None:
    """Why a connection to `address` is refused, or None when it is allowed."""
    kind = classify(address)
    if kind == "forbidden":
        return f"address {address} is in a network that never receives tokens"
    if kind not in networks:
        return (
            f"address {address} is {kind}; DELIVERY_ALLOWED_ENDPOINT_NETWORKS allows "
            f"{canonical(networks)}"
        )
    return None


def ip_literal(host: str) -> IPAddress | None:
    """The address when `host` is an IP literal (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    address = ip_literal(host)
    if address is not None:
        return classify(address) == "loopback"
    return host.lower().rstrip(".") in LOOPBACK_NAMES
