"""Settle a flush: each leased group by its own answer, through the one retry policy.

Whatever the request was (a direct call, a `batch`, or none: a refused token to refresh first),
every group goes through the same steps, so the same answer reaches the same outcome on every
path: not sent (back at once); delivered; refused for its token (one refresh for the whole
flush, then back at once, or the refresh's failure decided by the policy); anything else
`decide()`d, a method refused inside `batch` among them (packing off for the portal, the group
back at once, not a failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from worker.errors import PortalError
from worker.flush.call import reset_at_of
from worker.flush.policy import Backoff, Decision, Outcome, decide
from worker.flush.request import Answers, Reply, Sent
from worker.portals.registry import Refresh
from worker.runtime import Runtime
from worker.store.kinds import Action
from worker.store.replies import Lease

log = structlog.stdlib.get_logger("worker.flush.settle")

#: another process is refreshing: look again this soon (begin.lua then waits for the refresh's
#: end without a call while its lock is held; the delay only keeps a refresh that cannot start
#: yet, with no lock to wait on, from spinning)
REFRESH_WAIT_S = 0.2
#: a token refused (not expired): one refresh, then the portal is parked when it is refused again
REFUSED_TOKEN = frozenset({"NO_AUTH_FOUND", "invalid_token"})


@dataclass(frozen=True)
class Refreshed:
    """A token refresh's end: the groups go again after `delay_s`, or, when it failed, `error`
    decides for them."""

    code: str
    delay_s: float = 0.0
    error: PortalError | None = None


def settle(
    rt: Runtime, leases: list[Lease], answers: Answers, done: set[int] | None = None
) -> list[Action]:
    """Settle every leased group by its reply; the action taken for each. `done` collects the
    index of each group settled (the flow settles the others when judging raised)."""
    refused = next((r.answer.error for r in answers.each if _outcome(r) is Outcome.AUTH), None)
    refreshed = None
    if refused is not None:
        # no flush calls with this token version again: they wait for the refresh, or do it
        first = leases[0]
        rt.buffer.refuse(first.group.portal, first.token_version, refused.code)
        log.info("token refused", code=refused.code, token_version=first.token_version)
        refreshed = refresh(rt, first, refused.code)
    # a command's error inside a `batch` answer is counted here (a whole request's, as a call)
    commands = [r.answer.error for r in answers.each if r.sent is Sent.COMMAND and r.answer.error]
    if commands:
        rt.buffer.count_codes([error.code for error in commands])
    not_packable = [e.code for e in commands if e.outcome is Outcome.NOT_PACKABLE]
    if not_packable and rt.buffer.turn_packing_off(leases[0].group.portal, not_packable[0]):
        log.warning("packing turned off for the portal", code=not_packable[0], alert=True)
    actions = []
    for lease, reply in zip(leases, answers.each, strict=True):
        with structlog.contextvars.bound_contextvars(
            connector=lease.group.connector, line=lease.group.line, batch=len(lease.ids)
        ):
            actions.append(_one(rt, lease, reply, refreshed))
        if done is not None:
            done.add(len(actions) - 1)
    return actions


def _outcome(reply: Reply) -> Outcome:
    error = reply.answer.error
    return Outcome.DONE if error is None else error.outcome


def _one(rt: Runtime, lease: Lease, reply: Reply, refreshed: Refreshed | None) -> Action:
    answer = reply.answer
    if reply.sent is Sent.UNSENT:  # no room in the request: first in the next, not a failure
        rt.send_flush(lease.group, rt.buffer.settle(lease, Action.RETRY).trigger)
        return Action.RETRY
    if answer.error is None:  # (its own direct call is counted by its settle)
        return delivered(rt, lease, answer.time, counts_call=reply.sent is Sent.CALL)
    if answer.error.outcome is Outcome.AUTH and refreshed is not None:
        return after_refresh(rt, lease, refreshed)
    # (a method refused inside `batch`: the policy sends it back at once, not a failure)
    return failed(rt, lease, answer.error)


def delivered(
    rt: Runtime, lease: Lease, time_block: dict[str, Any], *, counts_call: bool = False
) -> Action:
    # the time block is advice: a reset time that is no sane Unix time is not kept
    reset_at = reset_at_of(time_block)
    settled = rt.buffer.settle(
        lease, Action.DELIVERED, operating_reset_at=reset_at, counts_call=counts_call
    )
    rt.send_flush(lease.group, settled.trigger)
    log.info("batch delivered", delivered=settled.settled)
    return Action.DELIVERED


def refresh(rt: Runtime, lease: Lease, code: str) -> Refreshed:
    """Refresh the token version the portal refused (once for the whole flush), and wake the
    groups that waited for a refresh."""
    portal = lease.group.portal
    try:
        result = rt.portals.refresh(
            portal, lease.token_version, refused=code if code in REFUSED_TOKEN else ""
        )
    except PortalError as error:
        log.warning("token refresh failed", code=error.code, description=error.description)
        rt.send_flushes(rt.buffer.wake_refresh_waiters(portal))
        return Refreshed(code, error=error)
    log.info("token refresh", result=result.value)
    if result is not Refresh.IN_PROGRESS:  # we held the lock, if only to find a new version
        rt.send_flushes(rt.buffer.wake_refresh_waiters(portal))
    return Refreshed(code, REFRESH_WAIT_S if result is Refresh.IN_PROGRESS else 0.0)


def after_refresh(rt: Runtime, lease: Lease, refreshed: Refreshed) -> Action:
    """The group goes again with the new token (or waits for another process's refresh); a
    failed refresh is decided by the policy."""
    if refreshed.error is not None:
        return failed(rt, lease, refreshed.error)
    settled = rt.buffer.settle(
        lease, Action.REFRESH, delay_s=refreshed.delay_s, code=refreshed.code
    )
    rt.send_flush(lease.group, settled.trigger)
    return Action.REFRESH


def failed(rt: Runtime, lease: Lease, error: PortalError, *, failures: int | None = None) -> Action:
    """The policy's decision for the group after `error`, applied (`failures`: the count to
    decide with, when not the lease's)."""
    decision = decide(
        error.outcome,
        failures=lease.failures if failures is None else failures,
        throttles=lease.throttles,
        bad_answers=lease.bad_answers,
        age_s=max(0.0, lease.started_at - lease.oldest_enqueued_at),
        backoff=_backoff(rt),
        now=rt.buffer.server_time(),
        reset_at=error.reset_at or rt.buffer.stored_reset_at(lease.group.portal),
        key_waits=rt.portals.key_waits(lease.group.portal),
    )
    fields: dict[str, Any] = {"code": error.code, "description": error.description}
    settled = rt.buffer.settle(
        lease,
        decision.action,
        delay_s=decision.delay_s,
        portal_wide=decision.portal_wide,
        drain_budget=decision.drain_budget,
        counts_failure=decision.counts_failure,
        counts_key_wait=decision.counts_key_wait,
        bad_answer=decision.bad_answer,
        **fields,
    )
    rt.send_flush(lease.group, settled.trigger)
    _log(decision, error, settled.settled, fields)
    return decision.action


def _log(decision: Decision, error: PortalError, settled: int, fields: dict[str, Any]) -> None:
    if decision.action is Action.DEAD_LETTER:
        log.error("batch dead-lettered", dead_lettered=settled, **fields)
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


def _backoff(rt: Runtime) -> Backoff:
    s = rt.settings
    return Backoff(
        s.backoff_base_s,
        s.backoff_cap_s,
        s.max_attempts,
        s.max_age_s,
        s.overload_park_s,
        s.operation_limit_wait_s,
        s.max_bad_answers,
    )
