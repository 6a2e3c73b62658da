"""The OAuth server's token endpoint (refresh grant with single-use refresh tokens)."""

from __future__ import annotations

import threading
import time
from typing import Any

from .faults import FaultBook, FaultTarget
from .portal import Credentials, PortalState
from .replies import Reply, error_reply, fault_reply, json_reply
from .tokens import TokenStore


class OAuthEndpoint:
    """Mixed into :class:`b24sim.core.SimCore`, which provides the state declared here."""

    client_id: str
    client_secret: str
    _lock: threading.RLock
    _portals: dict[str, PortalState]
    _tokens: TokenStore
    _faults: FaultBook

    def issue_credentials(self, member_id: str) -> Credentials:
        raise NotImplementedError

    def _count(self, p: PortalState, *names: str) -> None:
        raise NotImplementedError

    def oauth_token(self, params: dict[str, Any]) -> Reply:
        token = str(params.get("refresh_token") or "")
        member_id = self._tokens.owner_of_refresh(token)
        target: FaultTarget = "oauth"
        faulted = fault_reply(self._faults.consult(member_id, target), oauth=True)
        p = self._portals.get(member_id) if member_id else None
        if faulted is not None:
            if p is not None:
                self._count(p, "faults_injected", "refresh_failures")
            return faulted
        reply = self._refresh_grant(params, token, p)
        if reply.status != 200 and p is not None:
            self._count(p, "refresh_failures")
        return reply

    def _refresh_grant(self, params: dict[str, Any], token: str, p: PortalState | None) -> Reply:
        if params.get("grant_type") != "refresh_token":
            return error_reply("invalid_request", "grant_type must be refresh_token", oauth=True)
        if (
            params.get("client_id") != self.client_id
            or params.get("client_secret") != self.client_secret
        ):
            return error_reply("invalid_client", oauth=True)
        if not token:
            return error_reply("invalid_request", "refresh_token is required", oauth=True)
        if p is not None and p.config.refresh_latency_s > 0:
            time.sleep(p.config.refresh_latency_s)
        with self._lock:
            if p is None or p.config.refresh_revoked:
                return error_reply("invalid_grant", oauth=True)
            member_id = self._tokens.consume(token)
            if member_id is None:
                return error_reply("invalid_grant", oauth=True)
            creds = self.issue_credentials(member_id)
            p.counters["refreshes"] += 1
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
                    "server_endpoint": creds.server_endpoint,
                    "domain": c.domain,
                    "scope": c.scope,
                    "status": c.status,
                    "user_id": c.user_id,
                },
            )
