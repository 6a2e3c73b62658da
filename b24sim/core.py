"""Transport-independent simulator state: portals and their addresses, tokens, OAuth servers,
faults, records. Request handling is mixed in from :mod:`b24sim.rest` and :mod:`b24sim.oauth`."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from .faults import Fault, FaultBook
from .hostile import check_kind
from .oauth import OAuthEndpoint, OAuthServer
from .portal import Accepted, Credentials, PortalConfig, PortalState
from .records import CallRecord, Recorder, RefreshRecord
from .rest import RestEndpoint
from .snapshot import snapshot
from .tokens import TokenStore

REDIRECT_STATUSES = (301, 302, 307, 308)


class SimCore(RestEndpoint, OAuthEndpoint):
    """All simulator state. Thread-safe; the HTTP layer lives in :mod:`b24sim.server`."""

    def __init__(
        self, client_id: str, client_secret: str, seed: int | None = 0, strict: bool = False
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.strict = strict
        self._lock = threading.RLock()
        self._portals: dict[str, PortalState] = {}
        self._routes: dict[tuple[str, str], str] = {}  # (base_url, prefix) -> member_id
        self._moved: dict[tuple[str, str], tuple[str, int]] = {}  # old address -> (member, status)
        self._move_ids = itertools.count(1)
        self._oauth: list[OAuthServer] = []
        self._tokens = TokenStore()
        self._current: dict[str, Credentials] = {}
        self._records: list[Accepted] = []
        self._recorder = Recorder()
        self._call_ids = itertools.count(1)
        self._faults = FaultBook(seed)

    # -- to be provided by the server layer
    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def _open_listener(self, oauth_index: int | None) -> str:
        """Serve on a new loopback port (REST only, or one OAuth server); its base URL."""
        raise NotImplementedError

    @property
    def oauth_url(self) -> str:
        return f"{self.base_url}/oauth/token/"

    # -- OAuth servers
    def oauth_server(self, index: int = 0) -> OAuthServer:
        with self._lock:
            if not self._oauth:
                self._oauth.append(OAuthServer(0, self.base_url))
            try:
                return self._oauth[index]
            except IndexError:
                raise KeyError(f"unknown OAuth server {index}") from None

    def oauth_servers(self) -> list[OAuthServer]:
        with self._lock:
            self.oauth_server(0)
            return list(self._oauth)

    def add_oauth_server(
        self, delay_s: float = 0.0, client_id: str | None = None, client_secret: str | None = None
    ) -> OAuthServer:
        """Another OAuth server (a region) on its own port, sharing the token state."""
        with self._lock:
            index = len(self.oauth_servers())
            srv = OAuthServer(index, self._open_listener(index), delay_s, client_id, client_secret)
            self._oauth.append(srv)
            return srv

    def set_oauth_delay(self, delay_s: float, server: int = 0) -> None:
        """Refreshes at that server wait ``delay_s`` after spending the token before answering."""
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self.oauth_server(server).delay_s = float(delay_s)

    # -- portals and their addresses
    def add_portal(self, config: PortalConfig) -> Credentials:
        with self._lock:
            if config.member_id in self._portals:
                raise ValueError(f"portal {config.member_id!r} already exists")
            self.oauth_server(config.oauth_server)  # must exist
            p = PortalState.create(config, self.base_url)
            if (p.base_url, p.prefix) in self._moved:
                raise ValueError(f"address {p.client_endpoint} belongs to a moved portal")
            self._portals[config.member_id] = p
            self._routes[(p.base_url, p.prefix)] = config.member_id
            return self.issue_credentials(config.member_id)

    def move_portal(self, member_id: str, status: int = 302, new_port: bool = False) -> str:
        """The portal changes its address: the old one answers ``status`` with a ``Location`` at
        the new one (same method path and query). The new address is a second base path on this
        server, or the same path on a new loopback port. Returns the new ``client_endpoint``."""
        if status not in REDIRECT_STATUSES:
            raise ValueError(f"status must be one of {REDIRECT_STATUSES}")
        with self._lock:
            p = self._portal(member_id)
            old = (p.base_url, p.prefix)
            if new_port:
                new = (self._open_listener(None), member_id)
            else:
                new = (p.base_url, f"{member_id}-moved{next(self._move_ids)}")
            del self._routes[old]
            self._moved[old] = (member_id, status)
            self._routes[new] = member_id
            p.base_url, p.prefix = new
            return p.client_endpoint

    def resolve(self, base_url: str, prefix: str) -> tuple[str, int | None] | None:
        """(member_id, redirect status or None) of an address, None if no portal is there."""
        with self._lock:
            mid = self._routes.get((base_url, prefix))
            if mid is not None:
                return mid, None
            return self._moved.get((base_url, prefix))

    def client_endpoint(self, member_id: str) -> str:
        """The portal's current REST address."""
        return self._portal(member_id).client_endpoint

    def portal_config(self, member_id: str) -> PortalConfig:
        return self._portal(member_id).config

    def portals(self) -> list[str]:
        with self._lock:
            return list(self._portals)

    def _portal(self, member_id: str) -> PortalState:
        with self._lock:
            try:
                return self._portals[member_id]
            except KeyError:
                raise KeyError(f"unknown portal {member_id!r}") from None

    # -- tokens
    def issue_credentials(self, member_id: str, server: int | None = None) -> Credentials:
        """A fresh token pair for the portal (as on install); older tokens stay valid.
        ``server``: the OAuth server named in it (default: the portal's)."""
        with self._lock:
            p = self._portal(member_id)
            ttl = p.config.token_ttl_s
            access, refresh, version = self._tokens.issue(member_id, ttl)
            srv = self.oauth_server(p.config.oauth_server if server is None else server)
            creds = Credentials(
                member_id=member_id,
                domain=p.config.domain,
                client_endpoint=p.client_endpoint,
                server_endpoint=srv.server_endpoint,
                access_token=access,
                refresh_token=refresh,
                expires_in=int(ttl) if float(ttl).is_integer() else ttl,
                expires=int(time.time() + ttl),
                version=version,
            )
            self._current[member_id] = creds
            return creds

    def credentials(self, member_id: str) -> Credentials:
        """The most recently issued token pair of the portal."""
        with self._lock:
            self._portal(member_id)
            return self._current[member_id]

    def webhook_token(self, member_id: str) -> str:
        """A token that authenticates but is not an application token (gets WRONG_AUTH_TYPE)."""
        return self._tokens.issue_webhook(member_id, self._portal(member_id).config.token_ttl_s)

    def expire_tokens(self, member_id: str | None = None) -> int:
        """Make the current access tokens of a portal (or all portals) expired now."""
        return self._tokens.expire(member_id)

    def revoke_refresh(self, member_id: str, revoked: bool = True) -> None:
        """Every refresh for the portal answers invalid_grant (the app must be reinstalled)."""
        self._portal(member_id).config.refresh_revoked = revoked

    def refuse_in_batch(
        self, member_id: str, error: str | None = "ERROR_BATCH_METHOD_NOT_ALLOWED"
    ) -> None:
        """The portal's ``batch`` answers ``error`` for each imconnector command (None: allow)."""
        self._portal(member_id).config.batch_refuse = error

    def set_hostile(self, member_id: str, kind: str | None) -> None:
        """Make the portal answer as an adversary would (b24sim/hostile.py); None: honest."""
        self._portal(member_id).config.hostile = check_kind(kind)

    # -- faults
    def inject(self, fault: Fault) -> int:
        return self._faults.add(fault)

    def clear_faults(self, portal: str | None = None, fault_id: int | None = None) -> int:
        return self._faults.clear(portal, fault_id)

    def faults(self) -> list[Fault]:
        return self._faults.list()

    # -- records and counters
    def accepted(self, portal: str | None = None) -> list[Accepted]:
        with self._lock:
            return [r for r in self._records if portal is None or r.member_id == portal]

    def calls(self, portal: str | None = None) -> list[CallRecord]:
        """Every REST request addressed to a portal, in arrival order."""
        return self._recorder.calls(portal)

    def call_outcomes(self, portal: str | None = None) -> dict[str, int]:
        """Requests per outcome ("success", error code, "redirect_302", ...)."""
        return self._recorder.call_outcomes(portal)

    def replaced_token_calls(self, portal: str | None = None) -> int:
        """Requests made with a token that a refresh replaced or was replacing."""
        return sum(1 for c in self._recorder.calls(portal) if c.with_replaced_token)

    def refresh_requests(
        self, server: int | None = None, portal: str | None = None
    ) -> list[RefreshRecord]:
        """Every token-endpoint request, with the server that got it and the client id/secret."""
        return self._recorder.refreshes(server, portal)

    def refresh_counts(self) -> dict[int, int]:
        """Token-endpoint requests per OAuth server index."""
        return self._recorder.refresh_counts()

    def invalid_grants(self, portal: str | None = None) -> int:
        """invalid_grant answers given (to refreshes of that portal's tokens)."""
        return sum(
            1 for r in self._recorder.refreshes(portal=portal) if r.outcome == "invalid_grant"
        )

    def counters(self, portal: str) -> dict[str, int]:
        with self._lock:
            return dict(self._portal(portal).counters)

    def bucket_level(self, portal: str) -> float:
        return self._portal(portal).bucket.level

    def clear_records(self) -> None:
        with self._lock:
            self._records.clear()
            self._recorder.clear()

    def reset(self) -> None:
        """Clear records, counters, faults, bucket levels, operating time; keep portals, tokens."""
        with self._lock:
            self.clear_records()
            self._faults.clear()
            for p in self._portals.values():
                p.reset()

    def _count(self, p: PortalState, *names: str) -> None:
        with self._lock:
            for n in names:
                p.counters[n] += 1

    def state(self, records: bool = True) -> dict[str, Any]:
        return snapshot(self, records)
