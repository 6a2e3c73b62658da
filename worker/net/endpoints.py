"""Where a portal's tokens and the app's secret may go: pure checks on the addresses a portal names.

A portal is not trusted: its registration, its OAuth server's answers and its redirects name
addresses, and each one is checked here before anything connects to it.

- `token_endpoint`: where a portal's refresh goes. The operator's BITRIX24_OAUTH_URL, when set, is
  trusted as set; otherwise the host of the portal's `server_endpoint`, only when it is in
  BITRIX24_OAUTH_HOSTS (the client secret travels with every refresh); otherwise the default.
- `moved_endpoint`: the new REST address of a portal that answered a redirect.

Both only read strings: no DNS, no connection (the network rules on resolved addresses are applied
where the connection is made).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from worker.settings import Settings, check_endpoint

DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"
TOKEN_PATH = "/oauth/token/"  # noqa: S105 (a path)


def endpoint_problem(url: str, *, loopback_ok: bool) -> str | None:
    """Why `url` may not receive a token, or None: https (http only on loopback, when allowed),
    absolute, no credentials."""
    problem = check_endpoint(url)
    if problem:
        return problem
    if urlsplit(url).scheme == "http" and not loopback_ok:
        return "must use https:// (http:// only on loopback, when loopback endpoints are allowed)"
    return None


def host_allowed(url: str, entries: frozenset[tuple[str, int | None]]) -> bool:
    """The URL's host is an entry, exactly (an entry without a port allows any port)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return False
    return any(host == h and (p is None or p == port) for h, p in entries)


@dataclass(frozen=True)
class TokenEndpoint:
    url: str | None  # None: refused
    #: where the URL came from: "operator", "server_endpoint" or "default"
    source: str
    #: the host that was refused (for the alert), with why
    refused_host: str = ""
    problem: str = ""


def token_endpoint(settings: Settings, server_endpoint: str | None) -> TokenEndpoint:
    """Where this portal's refresh goes, or why it may not go anywhere."""
    if settings.oauth_url:
        return TokenEndpoint(settings.oauth_url, "operator")
    if not server_endpoint:
        return TokenEndpoint(DEFAULT_OAUTH_URL, "default")
    problem = server_endpoint_problem(settings, server_endpoint)
    if problem:
        return TokenEndpoint(None, "server_endpoint", _host(server_endpoint), problem)
    parts = urlsplit(server_endpoint)
    netloc = parts.netloc.rpartition("@")[2]
    return TokenEndpoint(f"{parts.scheme}://{netloc}{TOKEN_PATH}", "server_endpoint")


def server_endpoint_problem(settings: Settings, server_endpoint: str) -> str | None:
    """Why a portal-supplied `server_endpoint` may not receive the app's secret, or None."""
    problem = endpoint_problem(server_endpoint, loopback_ok=settings.loopback_allowed)
    if problem:
        return f"server_endpoint {problem}"
    if not host_allowed(server_endpoint, settings.oauth_host_entries):
        return (
            f"server_endpoint host {_host(server_endpoint)!r} is not in BITRIX24_OAUTH_HOSTS "
            f"({settings.oauth_hosts})"
        )
    return None


def moved_endpoint(
    location: str, request_url: str, method: str, old_endpoint: str, *, loopback_ok: bool
) -> tuple[str | None, str]:
    """(new client_endpoint, "") for a redirect that keeps the call, else (None, why not).

    The Location (relative ones resolved against the request) must be an acceptable endpoint
    (https, no credentials), carry no query or fragment, keep the method path (end in `method`),
    and leave an endpoint whose path ends as the old one did (`.../rest/`).
    """
    if not location or len(location) > 2048:
        return None, "the redirect has no usable Location"
    try:
        target = urljoin(request_url, location.strip())
        parts = urlsplit(target)
    except ValueError:
        return None, "the redirect's Location is not a URL"
    problem = endpoint_problem(target, loopback_ok=loopback_ok)
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
        return None, f"the redirect target's path does not end in /{old_tail}/ as the endpoint did"
    if new_endpoint == old_endpoint:
        return None, "the redirect points back at the same endpoint"
    return new_endpoint, ""


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        return (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return url[:100]


@dataclass(frozen=True)
class Adopted:
    """What a refresh answer may change: the endpoints that passed the checks, and refusals."""

    client_endpoint: str | None  # None: keep the stored one
    server_endpoint: str | None
    #: (code, description) of what was refused: the portal is parked with it
    refusal: tuple[str, str] | None = None


def adopt(settings: Settings, answer: dict[str, object]) -> Adopted:
    """The endpoints a refresh answer names, each taken only when it passes the same checks as a
    registration's. The answer's `domain` is the OAuth server's host: never the portal's."""
    client, server, refusal = None, None, None
    raw_server = answer.get("server_endpoint")
    if isinstance(raw_server, str) and raw_server:
        problem = server_endpoint_problem(settings, raw_server)
        if problem is None:
            server = raw_server
        elif not settings.oauth_url:  # with the operator's URL, it is never used anyway
            refusal = ("OAUTH_HOST_NOT_ALLOWED", f"refresh answer: {problem}")
    raw_client = answer.get("client_endpoint")
    if isinstance(raw_client, str) and raw_client:
        problem = endpoint_problem(raw_client, loopback_ok=settings.loopback_allowed)
        if problem is None:
            client = raw_client if raw_client.endswith("/") else raw_client + "/"
        else:
            refusal = ("ENDPOINT_REFUSED", f"refresh answer: client_endpoint {problem}")
    return Adopted(client, server, refusal)
