"""The guarded connection: every request and every connection of its session passes a `Policy`.

A portal names its own endpoint, so a check of the URL alone is not enough: a name can resolve
to an internal address, and a name that resolved to a public address a moment ago can resolve
to an internal one now (DNS rebinding). So the check sits in the connection itself: a session of
this module judges each request's URL first (`Policy.request_problem`), then resolves the host
once, refuses the connection unless every address the host resolves to is allowed
(`Policy.addresses`), and connects to exactly those checked addresses. TLS still verifies the
certificate against the host name (SNI and `Host` are unchanged), and a redirect followed
through the session is checked the same way. Proxies from the environment are not used: through
a proxy the check would see the proxy.

`request()` is the calls' own way through a session: the adapter's judge of the URL, then
straight to the urllib3 pool that requests itself would use (the same guarded connections, the
same certificate checks: requests' CA bundle, `CERT_REQUIRED`), without requests' per-request
work a call to a portal never needs (cookies, hooks, proxies, merged settings, a `Response`):
that work cost more CPU than the rest of the call. It leans on requests' adapter internals
(`poolmanager`, the pool key's TLS fields) as of the pinned requests, here and nowhere else.

The rules are in worker/net/trust.py; this module only applies the policy a session is built
with (no process-wide state). The policy's `resolver` replaces how names are resolved: tests
point names at loopback addresses, and change the answer between two connections, without
touching the machine's DNS.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout, connection, parse_url

from worker.net import deadline
from worker.net.addresses import ip_literal
from worker.net.trust import EndpointRefused, Policy

__all__ = ["EndpointRefused", "GuardedAdapter", "new_session", "request", "system_resolver"]
USER_AGENT = "b24-delivery/0.1"
#: the pool key's TLS fields, as requests' adapter sets them for `verify=True`
_VERIFIED = {"cert_reqs": "CERT_REQUIRED", "ca_certs": DEFAULT_CA_BUNDLE_PATH}


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, connection.allowed_gai_family(), socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(host: str, port: int, policy: Policy, *, plain_http: bool) -> list[str]:
    """The addresses to connect to; raises EndpointRefused unless every one is allowed."""
    literal = ip_literal(host)
    if literal is not None:
        candidates = [str(literal)]
    else:
        candidates = (policy.resolver or system_resolver)(host, port)
    return policy.addresses(host, candidates, plain_http=plain_http)


class _Guarded(HTTPConnection):
    policy: ClassVar[Policy] = Policy()
    plain_http: ClassVar[bool] = True

    def _new_conn(self) -> socket.socket:
        sock = self._checked_conn()
        deadline.attach(sock)  # a new plain connection (TLS: attached when it awaits the answer)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline.attach(self.sock)  # a kept-alive connection, reused for this call
        return super().getresponse(*args, **kwargs)

    def _checked_conn(self) -> socket.socket:
        host = self._dns_host
        policy = self.policy
        try:
            if not policy.is_trusted(host, self.port):
                addresses = checked_addresses(host, self.port, policy, plain_http=self.plain_http)
            elif policy.resolver is not None and ip_literal(host) is None:
                addresses = policy.resolver(host, self.port)  # trusted as set: not judged
            else:
                return super()._new_conn()
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
    """A transport adapter whose every request and connection passes `policy`."""

    def __init__(self, policy: Policy, **kwargs: Any) -> None:
        self.policy = policy
        conn_http = type("GuardedHTTPConnection", (_Guarded,), {"policy": policy})
        conn_https = type("GuardedHTTPSConnection", (_GuardedTLS,), {"policy": policy})
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

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        """Judge the URL before anything connects (a followed redirect comes here too)."""
        url = request.url or ""
        problem = self.policy.request_problem(url)
        if problem:
            try:
                host = urlsplit(url).hostname or url[:100]
            except ValueError:
                host = url[:100]
            raise EndpointRefused(host, problem)
        return super().send(request, *args, **kwargs)

    def open(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: tuple[float, float],
    ) -> BaseHTTPResponse:
        """One request straight through requests' own urllib3 pool: the URL judged first, no
        redirect followed, no retry, the body left unread (the caller reads and closes it)."""
        problem = self.policy.request_problem(url)
        if problem:
            try:
                host = urlsplit(url).hostname or url[:100]
            except ValueError:
                host = url[:100]
            raise EndpointRefused(host, problem)
        parts = parse_url(url)
        scheme = (parts.scheme or "http").lower()
        pool: HTTPConnectionPool = self.poolmanager.connection_from_host(
            parts.host or "",
            parts.port,
            scheme,
            pool_kwargs=_VERIFIED if scheme == "https" else None,
        )
        return pool.urlopen(
            method,
            parts.request_uri,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            timeout=Timeout(connect=timeout[0], read=timeout[1]),
            preload_content=False,
            decode_content=False,
        )


def new_session(policy: Policy) -> requests.Session:
    """A session whose every request and connection passes `policy`.

    No proxies from the environment: through a proxy, the check would see the proxy."""
    s = requests.Session()
    s.trust_env = False
    s.headers["User-Agent"] = USER_AGENT
    adapter = GuardedAdapter(policy, pool_connections=32, pool_maxsize=32, max_retries=0)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: tuple[float, float],
) -> BaseHTTPResponse:
    """One request through a session of `new_session`, the body left unread (the caller reads
    it, then closes the answer): see the module's docstring. Raises EndpointRefused, or what
    urllib3 raises for the network."""
    adapter = session.get_adapter(url)
    if not isinstance(adapter, GuardedAdapter):
        raise TypeError("a session of new_session() is required: its adapter judges every call")
    sent = {str(k): str(v) for k, v in session.headers.items()}
    return adapter.open(method, url, body, {**sent, **(headers or {})}, timeout)


def refusal(policy: Policy, url: str) -> str | None:
    """Why `policy` would refuse a connection to `url` now, or None; resolves the host but
    connects to nothing. For a decision that outlives one call (storing a redirect's target): the
    connection itself is checked again when it is made."""
    problem = policy.request_problem(url)
    if problem:
        return problem
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if policy.is_trusted(host, port):
        return None
    try:
        checked_addresses(host, port, policy, plain_http=parts.scheme == "http")
    except EndpointRefused as exc:
        return str(exc)
    except OSError:  # resolves nowhere now: the call will fail as any network failure does
        return None
    return None
