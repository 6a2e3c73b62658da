"""OAuth servers' token endpoint: refresh grant with single-use refresh tokens.

Several OAuth servers (regions) may run, each on its own port, sharing one token state. A refresh
answer names the server that gave it: ``server_endpoint`` is that server's ``/rest/`` address and
``domain`` its host (not the portal's); ``client_endpoint`` is the portal's current address.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from .faults import FaultBook
from .portal import Credentials, PortalState
from .records import Recorder, RefreshRecord
from .replies import Reply, error_reply, fault_reply, json_reply
from .tokens import TokenStore


@dataclass
class OAuthServer:
    """One token endpoint. ``delay_s``: how long a refresh waits after the refresh token was spent
    (the old pair is dead, the new one not yet delivered) before the answer goes out.
    ``client_id``/``client_secret``: this region's application credentials (None: the
    simulator's)."""

    index: int
    base_url: str
    delay_s: float = 0.0
    client_id: str | None = None
    client_secret: str | None = None

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token/"

    @property
    def server_endpoint(self) -> str:
        return f"{self.base_url}/rest/"

    @property
    def domain(self) -> str:
        return urlsplit(self.base_url).netloc

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(token_url=self.token_url, server_endpoint=self.server_endpoint, domain=self.domain)
        return d


class OAuthEndpoint:
    """Mixed into :class:`b24sim.core.SimCore`, which provides the state declared here."""

    client_id: str
    client_secret: str
    _lock: threading.RLock
    _portals: dict[str, PortalState]
    _tokens: TokenStore
    _faults: FaultBook
    _recorder: Recorder

    def issue_credentials(self, member_id: str, server: int | None = None) -> Credentials:
        raise NotImplementedError

    def oauth_server(self, index: int = 0) -> OAuthServer:
        raise NotImplementedError

    def _count(self, p: PortalState, *names: str) -> None:
        raise NotImplementedError

    def oauth_token(self, params: dict[str, Any], server: int = 0) -> Reply:
        t0 = time.time()
        srv = self.oauth_server(server)
        token = str(params.get("refresh_token") or "")
        member_id = self._tokens.owner_of_refresh(token)
        p = self._portals.get(member_id) if member_id else None
        reply = fault_reply(self._faults.consult(member_id, "oauth", server), oauth=True)
        if reply is not None:
            if p is not None:
                self._count(p, "faults_injected")
        else:
            reply = self._refresh_grant(params, token, p, srv)
        if p is not None and reply.outcome != "success":
            self._count(p, "refresh_failures")
            if reply.error == "invalid_grant":
                self._count(p, "invalid_grant")
        self._recorder.add_refresh(
            RefreshRecord(
                server=server,
                member_id=member_id,
                client_id=str(params.get("client_id") or ""),
                client_secret=str(params.get("client_secret") or ""),
                refresh_token=token,
                status=reply.status,
                outcome=reply.outcome,
                started_at=t0,
                finished_at=time.time(),
            )
        )
        return reply

    def _refresh_grant(
        self, params: dict[str, Any], token: str, p: PortalState | None, srv: OAuthServer
    ) -> Reply:
        if params.get("grant_type") != "refresh_token":
            return error_reply("invalid_request", "grant_type must be refresh_token", oauth=True)
        client_id = srv.client_id if srv.client_id is not None else self.client_id
        secret = srv.client_secret if srv.client_secret is not None else self.client_secret
        if params.get("client_id") != client_id or params.get("client_secret") != secret:
            return error_reply("invalid_client", oauth=True)
        if not token:
            return error_reply("invalid_request", "refresh_token is required", oauth=True)
        self._tokens.begin_refresh(token)
        try:
            if p is not None and p.config.refresh_latency_s > 0:
                time.sleep(p.config.refresh_latency_s)  # before the token is spent
            with self._lock:
                if p is None or p.config.refresh_revoked:
                    return error_reply("invalid_grant", oauth=True)
                if self._tokens.consume(token) is None:
                    return error_reply("invalid_grant", oauth=True)
                creds = self.issue_credentials(p.config.member_id, server=srv.index)
                p.counters["refreshes"] += 1
            if srv.delay_s > 0:
                time.sleep(srv.delay_s)  # after: the old pair is dead, the new one not yet out
        finally:
            self._tokens.end_refresh(token)
        c = p.config
        return json_reply(
            200,
            {
                "access_token": creds.access_token,
                "refresh_token": creds.refresh_token,
                "expires": creds.expires,
                "expires_in": creds.expires_in,
                "member_id": c.member_id,
                "client_endpoint": creds.client_endpoint,
                "server_endpoint": srv.server_endpoint,
                "domain": srv.domain,
                "scope": c.scope,
                "status": c.status,
                "user_id": c.user_id,
            },
        )
