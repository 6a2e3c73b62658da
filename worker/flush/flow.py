"""The flush, as docs/design.md draws it: lease, call, settle.

`flush()` is what the `delivery.flush` task runs. It never sleeps: every wait is a trigger
(a short countdown) or a due time for the sweep, both decided by the scripts in `lua/`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import redis
import structlog

from worker.errors import PortalError
from worker.flush.call import METHOD, Timeouts, send_status_delivery
from worker.flush.policy import Action, Backoff, Decision, Outcome, decide
from worker.net.endpoints import moved_endpoint
from worker.portals.registry import Refresh
from worker.runtime import Runtime
from worker.store.buffer import Lease
from worker.store.keys import Group

log = structlog.stdlib.get_logger("worker.flush.flow")

#: another process is refreshing: look again this soon (begin.lua then waits for the refresh's
#: end without a call while its lock is held; the delay only keeps a refresh that cannot start
#: yet, with no lock to wait on, from spinning)
REFRESH_WAIT_S = 0.2
#: a token refused (not expired): one refresh, then the portal is parked when it is refused again
REFUSED_TOKEN = frozenset({"NO_AUTH_FOUND", "invalid_token"})


@contextlib.contextmanager
def renewing(
    rt: Runtime, leases: list[Lease], thread_name: str = "b24d-lease-renewal"
) -> Iterator[None]:
    """Renew every lease in `leases` every third of DELIVERY_LEASE_TTL_S from one thread while
    the block runs.

    A lease is short (a killed flusher's items return within seconds), so a live call that
    takes longer keeps it by renewal; a lease a renewal finds gone is dropped from the round,
    and the thread stops when none is left.
    """
    done = threading.Event()

    def renew() -> None:
        live = list(leases)
        while live and not done.wait(rt.settings.lease_ttl_s / 3):
            try:
                live = [lease for lease in live if rt.buffer.renew(lease)]
            except redis.RedisError as exc:  # the next round may reach Redis again
                log.warning("lease renewal failed", error=type(exc).__name__)

    thread = threading.Thread(target=renew, name=thread_name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def flush(rt: Runtime, group: Group, own_task_id: str) -> str:
    """Flush one group once. Returns what happened (for the task's result and the tests)."""
    from worker.flush import packed as packflush  # it builds on this module

    if packflush.packing_on(rt, group.portal):
        packed = packflush.flush_packed(rt, group, own_task_id)
        if packed:
            return packed
    begin = rt.buffer.begin(group, own_task_id)
    if begin.trigger:
        rt.send_flush(group, begin.trigger)
    if begin.lease is None:
        return begin.kind
    lease = begin.lease
    with (
        structlog.contextvars.bound_contextvars(
            portal=group.portal,
            connector=group.connector,
            line=group.line,
            batch=len(lease.ids),
            attempt=lease.failures + 1,
        ),
        renewing(rt, [lease]),
    ):
        if begin.kind == "refresh":  # the stored token was refused: refresh, do not call
            refreshed = _refresh(rt, lease, begin.refused_code)
            return (
                refreshed if isinstance(refreshed, str) else _settle_failure(rt, lease, refreshed)
            )
        return _call_and_settle(rt, lease)


def _send(rt: Runtime, lease: Lease, endpoint: str) -> dict[str, Any]:
    s = rt.settings
    return send_status_delivery(
        endpoint,
        rt.portals.open_token(lease.access_token),  # stored encrypted when keys are set
        lease.group.connector,
        lease.group.line,
        lease.elements,
        Timeouts(s.http_connect_timeout_s, s.http_read_timeout_s),
    )


def _call_and_settle(rt: Runtime, lease: Lease) -> str:
    try:
        time_block = _send(rt, lease, lease.endpoint)
    except PortalError as exc:
        rt.count_call(exc.outcome.value, exc.code)
        if exc.outcome is not Outcome.MOVED:
            return _failed(rt, lease, exc)
        try:
            time_block = _follow(rt, lease, exc)
        except PortalError as again:
            if again.code != "UNSAFE_REDIRECT":  # (refused before a second call)
                rt.count_call(again.outcome.value, again.code if again.code != exc.code else None)
            return _failed(rt, lease, again)
    rt.count_call(Outcome.DONE.value)
    reset_at = time_block.get("operating_reset_at")
    settled = rt.buffer.settle(
        lease,
        Action.DELIVERED,
        operating_reset_at=float(reset_at) if isinstance(reset_at, int | float) else None,
    )
    rt.send_flush(lease.group, settled.trigger)
    log.info("batch delivered", delivered=settled.settled)
    return "delivered"


def _follow(rt: Runtime, lease: Lease, moved: PortalError) -> dict[str, Any]:
    """The portal answered a redirect: check the new address, store it for the whole portal,
    and re-send this batch there once. Raises PortalError (UNSAFE_REDIRECT: nothing was sent)."""
    new = store_move(rt, lease, moved, METHOD)
    try:
        return _send(rt, lease, new)
    except PortalError as exc:
        if exc.outcome is Outcome.MOVED:  # followed once per flush; the next flush goes on
            raise PortalError(
                Outcome.TRANSIENT, "REDIRECTED_AGAIN", "the new address redirected too"
            ) from None
        raise


def store_move(rt: Runtime, lease: Lease, moved: PortalError, method: str) -> str:
    """The portal answered `method` with a redirect: when the new address passes the endpoint
    checks, store it for the whole portal and return it; else raise PortalError
    (UNSAFE_REDIRECT)."""
    new, why = moved_endpoint(
        moved.location,
        lease.endpoint + method,
        method,
        lease.endpoint,
        loopback_ok=rt.settings.loopback_allowed,
    )
    if new is None:
        shown = repr(moved.location[:200])
        log.error("redirect refused", status=moved.http_status, location=shown, alert=True)
        raise PortalError(
            Outcome.DENIED, "UNSAFE_REDIRECT", f"HTTP {moved.http_status} to {shown}: {why}"
        )
    stored = rt.portals.move(lease.group.portal, lease.endpoint, new)
    log.warning("portal moved", status=moved.http_status, new_endpoint=new, stored=stored)
    return new


def _failed(rt: Runtime, lease: Lease, error: PortalError) -> str:
    if error.outcome is Outcome.AUTH:
        # no flush calls with this token version again: they wait for the refresh, or do it
        rt.buffer.refuse(lease.group.portal, lease.token_version, error.code)
        log.info("token refused", code=error.code, token_version=lease.token_version)
        refreshed = _refresh(rt, lease, error.code)
        if isinstance(refreshed, str):
            return refreshed
        error = refreshed
    return _settle_failure(rt, lease, error)


def _refresh(rt: Runtime, lease: Lease, code: str) -> str | PortalError:
    """Refresh the token version the portal refused, then let the group go again at once: with
    the new token, or, when another process is refreshing, to wait (without a call) for its end.
    Returns the refresh's error instead when it failed."""
    portal = lease.group.portal
    try:
        refreshed = rt.portals.refresh(
            portal, lease.token_version, refused=code if code in REFUSED_TOKEN else ""
        )
    except PortalError as refresh_error:
        log.warning(
            "token refresh failed", code=refresh_error.code, description=refresh_error.description
        )
        rt.send_flushes(rt.buffer.wake_refresh_waiters(portal))
        return refresh_error
    log.info("token refresh", result=refreshed.value)
    if refreshed is not Refresh.IN_PROGRESS:  # we held the lock, if only to find a new version
        rt.send_flushes(rt.buffer.wake_refresh_waiters(portal))
    delay = REFRESH_WAIT_S if refreshed is Refresh.IN_PROGRESS else 0.0
    settled = rt.buffer.settle(lease, Action.REFRESH, delay_s=delay, code=code)
    rt.send_flush(lease.group, settled.trigger)
    return "refresh"


def _settle_failure(rt: Runtime, lease: Lease, error: PortalError) -> str:
    decision = decide(
        error.outcome,
        failures=lease.failures,
        throttles=lease.throttles,
        age_s=max(0.0, lease.started_at - lease.oldest_enqueued_at),
        backoff=_backoff(rt),
        now=rt.buffer.server_time(),
        reset_at=error.reset_at or _stored_reset_at(rt, lease),
    )
    return _apply(rt, lease, error, decision)


def _apply(rt: Runtime, lease: Lease, error: PortalError, decision: Decision) -> str:
    fields: dict[str, Any] = {"code": error.code, "description": error.description}
    settled = rt.buffer.settle(
        lease,
        decision.action,
        delay_s=decision.delay_s,
        portal_wide=decision.portal_wide,
        drain_budget=decision.drain_budget,
        counts_failure=decision.counts_failure,
        **fields,
    )
    rt.send_flush(lease.group, settled.trigger)
    if decision.action is Action.DEAD_LETTER:
        log.error("batch dead-lettered", dead_lettered=settled.settled, **fields)
    elif decision.action is Action.PARK:
        until = "portal.register" if decision.delay_s == float("inf") else f"{decision.delay_s}s"
        log.error("portal parked", parked_until=until, alert=True, **fields)
    elif decision.action is Action.PARK_CONNECTOR:
        log.error("connector parked", parked_until="portal.register", alert=True, **fields)
    else:
        log.warning(
            "batch will be retried",
            retry_in_s=round(decision.delay_s, 3),
            outcome=error.outcome.value,
            **fields,
        )
    return decision.action.value


def _backoff(rt: Runtime) -> Backoff:
    s = rt.settings
    return Backoff(
        s.backoff_base_s,
        s.backoff_cap_s,
        s.max_attempts,
        s.max_age_s,
        s.overload_park_s,
        s.operation_limit_wait_s,
    )


def _stored_reset_at(rt: Runtime, lease: Lease) -> float | None:
    raw = rt.redis.hget(rt.buffer.keys.portal(lease.group.portal), "operating_reset_at")
    return float(raw) if raw else None
