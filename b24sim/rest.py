"""REST requests to a portal: admission (bucket, faults), auth, the method, and the call log.

The method is checked as the imconnector module does (see :mod:`b24sim.validate`): parameter
names case-insensitive, ``ERROR_ARGUMENT`` only for a missing or null one, ids not checked. With
``strict`` the spec's element checks apply too.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from .batch import run_batch
from .faults import FaultBook
from .hostile import REPLACING, hostile_reply, tamper
from .portal import Accepted, PortalState
from .records import CallRecord, Recorder
from .replies import MethodResult, Reply, error_reply, fault_reply, method_error, time_block
from .tokens import TokenStore
from .validate import METHOD, check_present, normalize, php_int, real_connector_id, validate


class RestEndpoint:
    """Mixed into :class:`b24sim.core.SimCore`, which provides the state declared here."""

    strict: bool
    _lock: threading.RLock
    _portals: dict[str, PortalState]
    _tokens: TokenStore
    _faults: FaultBook
    _recorder: Recorder
    _records: list[Accepted]
    _call_ids: itertools.count[int]

    def _count(self, p: PortalState, *names: str) -> None:
        raise NotImplementedError

    def rest_call(
        self,
        member_id: str | None,
        method: str,
        params: dict[str, Any],
        webhook_path: bool = False,
        address: str = "",
    ) -> Reply:
        t0 = time.time()
        if member_id is None:
            return error_reply("WRONG_AUTH_TYPE")
        p = self._portals.get(member_id)
        if p is None:
            return error_reply("PORTAL_NOT_FOUND")
        token = str(params.get("auth") or "")
        check = self._tokens.check(token)
        method = method.lower().removesuffix(".json")
        reply = self._admit(p, webhook_path) or self._authorize(p, token)
        if reply is None:
            if method == "batch":
                reply = run_batch(self, p, params, t0)
            elif method == METHOD:
                reply = self.run_method(p, method, params, t0).reply()
                if p.config.hostile == "bad_numbers" and reply.status == 200:
                    self._count(p, "hostile_answers")
                    reply = tamper(reply)
            else:
                reply = error_reply("ERROR_METHOD_NOT_FOUND")
        mine = check.member_id == member_id
        rec = CallRecord(
            call_id=next(self._call_ids),
            member_id=member_id,
            method=method,
            via="batch" if method == "batch" else "direct",
            address=address,
            access_token=token,
            token_version=check.version if mine else None,
            token_state=check.state if mine or check.state in ("unknown", "none") else "unknown",
            refresh_in_flight=mine and check.refresh_in_flight,
            status=reply.status,
            outcome=reply.outcome,
            at=t0,
        )
        if rec.with_replaced_token:
            self._count(p, "replaced_token_calls")
        self._recorder.add_call(rec)
        return reply

    def record_redirect(self, member_id: str, method: str, address: str, status: int) -> None:
        p = self._portals[member_id]
        self._count(p, "calls", "redirects")
        self._recorder.add_call(
            CallRecord(
                call_id=next(self._call_ids),
                member_id=member_id,
                method=method.lower().removesuffix(".json"),
                via="direct",
                address=address,
                access_token="",
                token_version=None,
                token_state="none",  # noqa: S106 (a state, not a secret)
                refresh_in_flight=False,
                status=status,
                outcome=f"redirect_{status}",
                at=time.time(),
            )
        )

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
            if faulted.error == "SUCCESS_FALSE":
                self._count(p, "success_false")
            return faulted
        if p.config.hostile in REPLACING:
            self._count(p, "hostile_answers")
            return hostile_reply(p.config.hostile or "")
        if webhook_path:
            self._count(p, "wrong_auth_type_403")
            return error_reply("WRONG_AUTH_TYPE")
        return None

    def _authorize(self, p: PortalState, token: str) -> Reply | None:
        acc = self._tokens.get(token)
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

    def run_method(
        self,
        p: PortalState,
        method: str,
        params: dict[str, Any],
        t0: float,
        via: str = "direct",
        command: str | None = None,
    ) -> MethodResult:
        """imconnector.send.status.delivery on an admitted, authorised request."""
        meter = p.meter(method)
        blocked, _, _ = meter.check()
        if blocked:  # the 429 body has no time block: the wait comes from the last success's
            self._count(p, "operation_limit_429")
            return method_error("OPERATION_TIME_LIMIT")
        norm = normalize(params)
        err = check_present(norm) or (validate(params, method) if self.strict else None)
        if err is not None:
            self._count(p, "error_argument_400")
            return method_error("ERROR_ARGUMENT", err)
        connector = real_connector_id(norm["CONNECTOR"])
        line = php_int(norm["LINE"])
        known = p.config.connectors
        if not connector or (known is not None and connector not in known):
            self._count(p, "no_provider_400")
            return method_error("IMCONNECTOR_NO_CORRECT_PROVIDER")
        # input.php routing(): the connector must be in the portal's active list; the line is
        # not checked on this path (receivingStatusDelivery), so config.lines plays no part
        active = p.config.active_connectors
        if active is not None and connector not in active:
            self._count(p, "not_active_connector_400")
            return method_error("IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR")
        total, reset_at = meter.add(p.config.operating_per_call_s)
        self._accept(p, connector, line, norm["MESSAGES"], via, command)
        return MethodResult(
            200, {"SUCCESS": True, "DATA": []}, time=time_block(t0, total, reset_at)
        )

    def _accept(
        self,
        p: PortalState,
        connector: str,
        line: int,
        msgs: list[Any],
        via: str,
        command: str | None,
    ) -> None:
        with self._lock:
            call_id = next(self._call_ids)
            now = time.time()
            for i, m in enumerate(msgs):
                el = m if isinstance(m, dict) else {}
                self._records.append(
                    Accepted(
                        member_id=p.config.member_id,
                        connector=connector,
                        line=line,
                        im=el.get("im"),
                        message=el.get("message"),
                        chat=el.get("chat"),
                        arrived_at=now,
                        call_id=call_id,
                        batch_size=len(msgs),
                        index=i,
                        via=via,
                        command=command,
                    )
                )
            p.counters["success"] += 1
            p.counters["accepted_messages"] += len(msgs)
