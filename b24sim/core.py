"""Transport-independent simulator state and request handling (REST method and OAuth refresh)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from .faults import Fault, FaultBook
from .oauth import OAuthEndpoint
from .portal import Accepted, Credentials, PortalConfig, PortalState
from .replies import Reply, error_reply, fault_reply, json_reply, time_block
from .tokens import TokenStore
from .validate import METHOD, validate


class SimCore(OAuthEndpoint):
    """All simulator state. Thread-safe; the HTTP layer lives in :mod:`b24sim.server`."""

    def __init__(self, client_id: str, client_secret: str, seed: int | None = 0) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._lock = threading.RLock()
        self._portals: dict[str, PortalState] = {}
        self._tokens = TokenStore()
        self._current: dict[str, Credentials] = {}
        self._records: list[Accepted] = []
        self._call_ids = itertools.count(1)
        self._faults = FaultBook(seed)

    # -- to be provided by the server layer
    @property
    def base_url(self) -> str:
        raise NotImplementedError

    @property
    def oauth_url(self) -> str:
        return f"{self.base_url}/oauth/token/"

    # -- portals and tokens
    def add_portal(self, config: PortalConfig) -> Credentials:
        with self._lock:
            if config.member_id in self._portals:
                raise ValueError(f"portal {config.member_id!r} already exists")
            self._portals[config.member_id] = PortalState.create(config, self.base_url)
            return self.issue_credentials(config.member_id)

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

    def issue_credentials(self, member_id: str) -> Credentials:
        """A fresh token pair for the portal (as on install); older tokens stay valid."""
        with self._lock:
            p = self._portal(member_id)
            ttl = p.config.token_ttl_s
            access, refresh = self._tokens.issue(member_id, ttl)
            creds = Credentials(
                member_id=member_id,
                domain=p.config.domain,
                client_endpoint=p.client_endpoint,
                server_endpoint=f"{self.base_url}/rest/",
                access_token=access,
                refresh_token=refresh,
                expires_in=int(ttl) if float(ttl).is_integer() else ttl,
                expires=int(time.time() + ttl),
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

    def counters(self, portal: str) -> dict[str, int]:
        with self._lock:
            return dict(self._portal(portal).counters)

    def bucket_level(self, portal: str) -> float:
        return self._portal(portal).bucket.level

    def clear_records(self) -> None:
        with self._lock:
            self._records.clear()

    def reset(self) -> None:
        """Clear records, counters, faults, bucket levels, operating time; keep portals, tokens."""
        with self._lock:
            self._records.clear()
            self._faults.clear()
            for p in self._portals.values():
                p.reset()

    def state(self, records: bool = True) -> dict[str, Any]:
        with self._lock:
            portals = {}
            for mid, p in self._portals.items():
                ops = {}
                for name, m in p.meters.items():
                    blocked, total, reset_at = m.check()
                    ops[name] = {
                        "operating": total,
                        "operating_reset_at": reset_at,
                        "blocked": blocked,
                    }
                portals[mid] = {
                    "config": p.config.to_dict(),
                    "client_endpoint": p.client_endpoint,
                    "counters": dict(p.counters),
                    "bucket_level": p.bucket.level,
                    "operating": ops,
                    "accepted": sum(1 for r in self._records if r.member_id == mid),
                    "credentials": self._current[mid].to_dict(),
                }
            out: dict[str, Any] = {
                "base_url": self.base_url,
                "oauth_url": self.oauth_url,
                "portals": portals,
                "faults": [f.to_dict() for f in self._faults.list()],
                "accepted_total": len(self._records),
            }
            if records:
                out["accepted"] = [r.to_dict() for r in self._records]
            return out

    def _count(self, p: PortalState, *names: str) -> None:
        with self._lock:
            for n in names:
                p.counters[n] += 1

    # -- request handling
    def rest_call(
        self, member_id: str | None, method: str, params: dict[str, Any], webhook_path: bool = False
    ) -> Reply:
        t0 = time.time()
        if member_id is None:
            return error_reply("WRONG_AUTH_TYPE")
        p = self._portals.get(member_id)
        if p is None:
            return error_reply("PORTAL_NOT_FOUND")
        reply = self._admit(p, webhook_path) or self._authorize(p, params)
        if reply is not None:
            return reply
        method = method.lower().removesuffix(".json")
        if method != METHOD:
            return error_reply("ERROR_METHOD_NOT_FOUND")
        return self._deliver(p, method, params, t0)

    def _admit(self, p: PortalState, webhook_path: bool) -> Reply | None:
        self._count(p, "calls")
        if not p.bucket.try_add():
            self._count(p, "rate_limited_503")
            return error_reply("QUERY_LIMIT_EXCEEDED")
        action = self._faults.consult(p.config.member_id, "rest")
        if action.fault_ids:
            self._count(p, "faults_injected")
        faulted = fault_reply(action, oauth=False)
        if faulted is not None:
            return faulted
        if webhook_path:
            self._count(p, "wrong_auth_type_403")
            return error_reply("WRONG_AUTH_TYPE")
        return None

    def _authorize(self, p: PortalState, params: dict[str, Any]) -> Reply | None:
        acc = self._tokens.get(str(params.get("auth") or ""))
        if acc is None or acc.member_id != p.config.member_id:
            self._count(p, "unauthorized_401", "no_auth_401")
            return error_reply("NO_AUTH_FOUND")
        if acc.expires_at <= time.monotonic():
            self._count(p, "unauthorized_401", "expired_token_401")
            return error_reply("expired_token")
        if acc.webhook:
            self._count(p, "wrong_auth_type_403")
            return error_reply("WRONG_AUTH_TYPE")
        return None

    def _deliver(self, p: PortalState, method: str, params: dict[str, Any], t0: float) -> Reply:
        meter = p.meter(method)
        blocked, total, reset_at = meter.check()
        if blocked:
            self._count(p, "operation_limit_429")
            return error_reply(
                "OPERATION_TIME_LIMIT", extra={"time": time_block(t0, total, reset_at)}
            )
        err = validate(params, method)
        if err is not None:
            self._count(p, "error_argument_400")
            return error_reply("ERROR_ARGUMENT", err)
        connector = str(params["CONNECTOR"])
        if p.config.connectors is not None and connector not in p.config.connectors:
            self._count(p, "no_provider_400")
            return error_reply("IMCONNECTOR_NO_CORRECT_PROVIDER")
        total, reset_at = meter.add(p.config.operating_per_call_s)
        msgs: list[dict[str, Any]] = params["MESSAGES"]
        with self._lock:
            call_id = next(self._call_ids)
            for i, m in enumerate(msgs):
                self._records.append(
                    Accepted(
                        member_id=p.config.member_id,
                        connector=connector,
                        line=int(params["LINE"]),
                        im=m["im"],
                        message=m.get("message"),
                        chat=m.get("chat"),
                        arrived_at=time.time(),
                        call_id=call_id,
                        batch_size=len(msgs),
                        index=i,
                    )
                )
            p.counters["success"] += 1
            p.counters["accepted_messages"] += len(msgs)
        return json_reply(
            200, {"result": {"SUCCESS": True, "DATA": []}, "time": time_block(t0, total, reset_at)}
        )
