"""May this URL receive a token or a secret? The one answer, as pure rules (no DNS, no socket).

A portal is not trusted: its registration, its OAuth server's answers and its redirects name
addresses, and each is judged here before anything connects to it. Every rule reads one `Trust`
(built from the settings by `Settings.trust()`):

- `url_problem`: a portal's endpoint (`client_endpoint`, a redirect's target, a refresh answer's
  endpoint): an absolute http(s) URL without credentials; https, except a loopback host when
  `loopback` is allowed; an IP literal must be in an allowed network
  (DELIVERY_ALLOWED_ENDPOINT_NETWORKS, `worker.net.addresses`). A name is judged again on every
  connection, on each address it resolves to (`Policy.addresses`, applied by `worker.net.guard`).
- `token_endpoint`: where a portal's refresh (with the app's client secret) goes: the operator's
  BITRIX24_OAUTH_URL when set; else the host of the portal's `server_endpoint`, only when it is in
  BITRIX24_OAUTH_HOSTS; else the default.
- `portal_policy` / `oauth_policy`: what a connection may reach. The operator's OAuth URL is
  trusted as set, and for the refresh ONLY: the portal calls' policy has no trusted host, so a
  portal naming the operator's (perhaps internal) OAuth host as its endpoint is judged like any
  other address.
- `moved_endpoint`: the new REST address of a portal that answered a redirect.
- `adopt`: the endpoints a refresh answer may change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from worker.net.addresses import (
    DEFAULT_NETWORKS,
    NETWORKS,
    address_problem,
    classify,
    ip_literal,
    is_loopback_host,
)

#: resolves a host name (and port) to address strings; tests inject their own
Resolver = Callable[[str, int], list[str]]
DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"
TOKEN_PATH = "/oauth/token/"  # noqa: S105 (a path)
#: every network: only what no setting allows is refused (scheme, credentials, forbidden literals)
ALL_NETWORKS = frozenset(NETWORKS)


class EndpointRefused(Exception):
    """A connection was refused by the rules before it was made.

    Deliberately not an OSError: urllib3 would take it for a network failure and retry.
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


def url_problem(url: str, networks: frozenset[str] = DEFAULT_NETWORKS) -> str | None:
    """Why `url` may not receive a token with these networks allowed, or None when it may."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return "must be an absolute URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an absolute http(s) URL"
    if parts.username or parts.password:
        return "must not carry credentials"
    if parts.scheme == "http" and not ("loopback" in networks and is_loopback_host(host)):
        if "loopback" in networks:
            return "must use https:// (http:// only for a loopback host)"
        return "must use https:// (http:// only for a loopback host when loopback is allowed)"
    address = ip_literal(host)
    if address is not None:
        return address_problem(address, networks)
    return None


def operator_url_problem(url: str, networks: frozenset[str]) -> str | None:
    """Why the operator's BITRIX24_OAUTH_URL is unusable, or None. Trusted as set (any network),
    but still an absolute URL without credentials, and https except on a loopback host when
    `loopback` is allowed."""
    problem = url_problem(url, ALL_NETWORKS)
    if problem is None and urlsplit(url).scheme == "http" and "loopback" not in networks:
        return "must use https:// (http:// only for a loopback host when loopback is allowed)"
    return problem


def host_port(url: str) -> tuple[str, int]:
    """(lowercased host, port with the scheme's default) of an absolute URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.hostname or "").lower().rstrip("."), port


@dataclass(frozen=True)
class Policy:
    """What one session's connections may reach (worker/net/guard.py applies it)."""

    networks: frozenset[str] = DEFAULT_NETWORKS
    #: (host, port) pairs connected to unchecked: the operator's OAuth URL, in the refresh's only
    trusted: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    #: None: the system's resolver
    resolver: Resolver | None = None

    def is_trusted(self, host: str, port: int) -> bool:
        return (host.lower().rstrip("."), port) in self.trusted

    def request_problem(self, url: str) -> str | None:
        """Why a request to `url` may not be made (before any connection), or None."""
        try:
            if self.is_trusted(*host_port(url)):
                return None
        except ValueError:
            return "must be an absolute URL"
        return url_problem(url, self.networks)

    def addresses(self, host: str, candidates: list[str], *, plain_http: bool) -> list[str]:
        """The addresses `host` resolved to, to connect to; raises EndpointRefused unless every
        one is allowed (one forbidden answer refuses the host: nothing is connected to)."""
        if not candidates:
            raise EndpointRefused(host, "resolves to no address")
        for candidate in candidates:
            address = ip_literal(candidate)
            if address is None:
                raise EndpointRefused(host, f"resolved to {candidate!r}, not an address")
            problem = address_problem(address, self.networks)
            if problem:
                raise EndpointRefused(host, problem)
            if plain_http and classify(address) != "loopback":
                raise EndpointRefused(host, f"http:// to non-loopback address {address}")
        return candidates


@dataclass(frozen=True)
class TokenEndpoint:
    url: str | None  # None: refused
    #: where the URL came from: "operator", "server_endpoint" or "default"
    source: str
    #: the host that was refused (for the alert), with why
    refused_host: str = ""
    problem: str = ""


@dataclass(frozen=True)
class Adopted:
    """What a refresh answer may change: the endpoints that passed the checks, and refusals."""

    client_endpoint: str | None  # None: keep the stored one
    server_endpoint: str | None
    #: (code, description) of what was refused: the portal is parked with it
    refusal: tuple[str, str] | None = None


@dataclass(frozen=True)
class Trust:
    """The trust settings: allowed networks, allowed OAuth hosts, the operator's OAuth URL."""

    networks: frozenset[str] = DEFAULT_NETWORKS
    #: BITRIX24_OAUTH_HOSTS as (host, port or None for any port)
    oauth_hosts: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)
    #: BITRIX24_OAUTH_URL: trusted as set, for the refresh only
    operator_oauth_url: str | None = None

    def url_problem(self, url: str) -> str | None:
        """Why a portal's endpoint may not receive its token, or None."""
        return url_problem(url, self.networks)

    def portal_policy(self, resolver: Resolver | None = None) -> Policy:
        """The connections of a call to a portal: no host is trusted."""
        return Policy(self.networks, frozenset(), resolver)

    def oauth_policy(self, resolver: Resolver | None = None) -> Policy:
        """The connections of a token refresh: the operator's OAuth URL is trusted as set."""
        trusted = {host_port(self.operator_oauth_url)} if self.operator_oauth_url else set()
        return Policy(self.networks, frozenset(trusted), resolver)

    def host_allowed(self, url: str) -> bool:
        """The URL's host is a BITRIX24_OAUTH_HOSTS entry, exactly (no port: any port)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            return False
        return any(host == h and (p is None or p == port) for h, p in self.oauth_hosts)

    def token_endpoint(self, server_endpoint: str | None) -> TokenEndpoint:
        """Where this portal's refresh goes, or why it may not go anywhere."""
        if self.operator_oauth_url:
            return TokenEndpoint(self.operator_oauth_url, "operator")
        if not server_endpoint:
            return TokenEndpoint(DEFAULT_OAUTH_URL, "default")
        problem = self.server_endpoint_problem(server_endpoint)
        if problem:
            return TokenEndpoint(None, "server_endpoint", _host(server_endpoint), problem)
        parts = urlsplit(server_endpoint)
        netloc = parts.netloc.rpartition("@")[2]
        return TokenEndpoint(f"{parts.scheme}://{netloc}{TOKEN_PATH}", "server_endpoint")

    def server_endpoint_problem(self, server_endpoint: str) -> str | None:
        """Why a portal-supplied `server_endpoint` may not receive the app's secret, or None."""
        problem = self.url_problem(server_endpoint)
        if problem:
            return f"server_endpoint {problem}"
        if not self.host_allowed(server_endpoint):
            allowed = ",".join(
                h + (f":{p}" if p else "") for h, p in sorted(self.oauth_hosts, key=str)
            )
            return (
                f"server_endpoint host {_host(server_endpoint)!r} is not in BITRIX24_OAUTH_HOSTS "
                f"({allowed})"
            )
        return None

    def moved_endpoint(
        self, location: str, request_url: str, method: str, old_endpoint: str
    ) -> tuple[str | None, str]:
        """(new client_endpoint, "") for a redirect that keeps the call, else (None, why not).

        The Location (relative ones resolved against the request) must be an acceptable endpoint
        (`url_problem`), carry no query or fragment, keep the method path (end in `method`), and
        leave an endpoint whose path ends as the old one did (`.../rest/`).
        """
        if not location or len(location) > 2048:
            return None, "the redirect has no usable Location"
        try:
            target = urljoin(request_url, location.strip())
            parts = urlsplit(target)
        except ValueError:
            return None, "the redirect's Location is not a URL"
        problem = self.url_problem(target)
        if problem:
            return None, f"redirect target {problem}"
        if parts.query or parts.fragment:
            return None, "the redirect target carries a query or fragment"
        if not parts.path.endswith("/" + method):
            return None, f"the redirect target does not keep the method path (/{method})"
        new_endpoint = target[: len(target) - len(method)]
        old_tail = urlsplit(old_endpoint).path.rstrip("/").rpartition("/")[2]
        new_tail = urlsplit(new_endpoint).path.rstrip("/").rpartition("/")[2]
        if old_tail != new_tail:
            return None, f"the redirect target's path does not end in /{old_tail}/ as it did"
        if new_endpoint == old_endpoint:
            return None, "the redirect points back at the same endpoint"
        return new_endpoint, ""

    def adopt(self, answer: dict[str, object]) -> Adopted:
        """The endpoints a refresh answer names, each taken only when it passes the same checks
        as a registration's. The answer's `domain` is the OAuth server's host: never the
        portal's."""
        client, server, refusal = None, None, None
        raw_server = answer.get("server_endpoint")
        if isinstance(raw_server, str) and raw_server:
            problem = self.server_endpoint_problem(raw_server)
            if problem is None:
                server = raw_server
            elif not self.operator_oauth_url:  # with the operator's URL it is never used anyway
                refusal = ("OAUTH_HOST_NOT_ALLOWED", f"refresh answer: {problem}")
        raw_client = answer.get("client_endpoint")
        if isinstance(raw_client, str) and raw_client:
            problem = self.url_problem(raw_client)
            if problem is None:
                client = raw_client if raw_client.endswith("/") else raw_client + "/"
            else:
                refusal = ("ENDPOINT_REFUSED", f"refresh answer: client_endpoint {problem}")
        return Adopted(client, server, refusal)


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        return (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return url[:100]
