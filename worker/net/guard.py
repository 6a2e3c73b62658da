"""Every connection that can carry a token is checked on the address it is actually made to.

A portal names its own endpoint, so a check of the URL alone is not enough: a name can resolve
to an internal address, and a name that resolved to a public address a moment ago can resolve
to an internal one now (DNS rebinding). So the check sits in the connection itself: the
`requests` session of this module resolves the host once, refuses the connection unless every
address the host resolves to is in an allowed network (`worker.net.addresses`), and connects to
exactly those checked addresses. TLS still verifies the certificate against the host name (SNI
and `Host` are unchanged), and a redirect followed through the session is checked the same way.
Proxies from the environment are not used: through a proxy the check would see the proxy.

The operator's own OAuth URL (`BITRIX24_OAUTH_URL`) is trusted as set and connects unchecked.

Test seam: `set_resolver()` replaces how host names are resolved (a function of host and port
returning address strings), so tests can point names at loopback addresses and change the answer
between two connections without touching the machine's DNS.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

from worker.net.addresses import DEFAULT_NETWORKS, address_problem, check_url, classify, ip_literal

Resolver = Callable[[str, int], list[str]]
USER_AGENT = "b24-delivery/0.1"


class EndpointRefused(Exception):
    """A connection was refused by the network policy before it was made.

    Deliberately not an OSError: urllib3 would take it for a network failure and retry.
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, connection.allowed_gai_family(), socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_resolver: Resolver = system_resolver


def set_resolver(resolver: Resolver | None) -> Resolver:
    """Replace the resolver (None: the system's); returns the one it replaces."""
    global _resolver
    previous, _resolver = _resolver, resolver or system_resolver
    return previous


@dataclass(frozen=True)
class Policy:
    networks: frozenset[str] = DEFAULT_NETWORKS
    #: (host, port) pairs connected to unchecked: the operator's OAuth URL
    trusted: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def build(cls, networks: Iterable[str], trusted_urls: Iterable[str | None] = ()) -> Policy:
        pairs = set()
        for url in trusted_urls:
            if url:
                parts = urlsplit(url)
                port = parts.port or (443 if parts.scheme == "https" else 80)
                pairs.add(((parts.hostname or "").lower(), port))
        return cls(frozenset(networks), frozenset(pairs))


def checked_addresses(host: str, port: int, policy: Policy, *, plain_http: bool) -> list[str]:
    """The addresses to connect to; raises EndpointRefused unless every one is allowed."""
    literal = ip_literal(host)
    candidates = [str(literal)] if literal is not None else _resolver(host, port)
    if not candidates:
        raise EndpointRefused(host, "resolves to no address")
    for candidate in candidates:
        address = ip_literal(candidate)
        if address is None:
            raise EndpointRefused(host, f"resolved to {candidate!r}, not an address")
        problem = address_problem(address, policy.networks)
        if problem:
            raise EndpointRefused(host, problem)
        if plain_http and classify(address) != "loopback":
            raise EndpointRefused(host, f"http:// to non-loopback address {address}")
    return candidates


class _Guarded(HTTPConnection):
    #: None: the process's policy at connect time (`configure`)
    fixed_policy: ClassVar[Policy | None] = None
    plain_http: ClassVar[bool] = True

    def _new_conn(self) -> socket.socket:
        host = self._dns_host
        policy = self.fixed_policy or _policy
        if (host.lower().rstrip("."), self.port) in policy.trusted:
            return super()._new_conn()
        try:
            addresses = checked_addresses(host, self.port, policy, plain_http=self.plain_http)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        error: OSError | None = None
        for address in addresses:  # the checked addresses, and only those
            try:
                sock = connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as e:  # the next checked address, as urllib3 does
                error = e
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


class _GuardedTLS(_Guarded, HTTPSConnection):
    plain_http = False


class GuardedAdapter(HTTPAdapter):
    """A transport adapter whose every connection passes `policy` (None: the process's)."""

    def __init__(self, policy: Policy | None = None, **kwargs: Any) -> None:
        conn_http = type("GuardedHTTPConnection", (_Guarded,), {"fixed_policy": policy})
        conn_https = type("GuardedHTTPSConnection", (_GuardedTLS,), {"fixed_policy": policy})
        self._pools: dict[str, type[HTTPConnectionPool]] = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": conn_http}),
            "https": type(
                "GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": conn_https}
            ),
        }
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


def new_session(policy: Policy | None = None) -> requests.Session:
    """A session whose every connection passes `policy` (None: the process's, when connecting).

    No proxies from the environment: through a proxy, the check would see the proxy."""
    s = requests.Session()
    s.trust_env = False
    s.headers["User-Agent"] = USER_AGENT
    adapter = GuardedAdapter(policy, pool_connections=32, pool_maxsize=32, max_retries=0)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


_policy = Policy()


def configure(policy: Policy) -> None:
    """Set this process's policy (the portal store does, from its settings); connections made from
    now on follow it."""
    global _policy
    _policy = policy


def url_problem(url: str) -> str | None:
    """Why `url` may not receive a token under this process's policy (see `check_url`)."""
    return check_url(url, _policy.networks)
