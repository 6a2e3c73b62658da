"""The flush, as docs/design.md draws it: begin, call, settle. One path for every size: a
portal's flush leases its ready groups (one, or up to DELIVERY_PACK_GROUPS when it packs), makes
one request (a direct call for one group, a `batch` for several), and settles each group by its
own answer (worker/flush/settle.py).

`flush()` is what the `delivery.flush` task runs. It never sleeps: every wait is a trigger
(a short countdown) or a due time for the sweep, both decided by the scripts in `lua/`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Sequence

import redis
import structlog

from worker.errors import PortalError
from worker.flush import renewal, request
from worker.flush.policy import OWN_CODES, Outcome
from worker.flush.settle import after_refresh, failed, refresh, settle
from worker.runtime import Runtime
from worker.store.keys import Group
from worker.store.kinds import Begun
from worker.store.replies import Lease

log = structlog.stdlib.get_logger("worker.flush.flow")


class Flushed(enum.StrEnum):
    """What a flush did (the task's result)."""

    # nothing leased: as begin.lua answered
    BUSY = Begun.BUSY.value
    WAIT = Begun.WAIT.value
    THROTTLED = Begun.THROTTLED.value
    REFRESH_WAIT = Begun.REFRESH_WAIT.value
    # one group leased: the policy's action for it
    DELIVERED = "delivered"
    RETRY = "retry"
    REFRESH = "refresh"
    PARK = "park"
    PARK_CONNECTOR = "park_connector"
    DEAD_LETTER = "dead_letter"
    # several groups in one `batch` request, each settled on its own
    PACKED = "packed"


def renewing(rt: Runtime, leases: list[Lease]) -> contextlib.AbstractContextManager[None]:
    """Renew every lease in `leases` every third of DELIVERY_LEASE_TTL_S while the block runs
    (worker/flush/renewal.py: one thread per process does it for every flush)."""
    return renewal.renewing(rt, leases)


def flush(rt: Runtime, group: Group, own_task_id: str, also: Sequence[Group] = ()) -> Flushed:
    """Flush the portal of `group` (one of its groups; `also`: more of them a tick named)
    once: begin, call, settle."""
    begin = rt.buffer.begin(group, own_task_id, also)
    if begin.trigger is not None and begin.trigger_group is not None:
        rt.send_flush(begin.trigger_group, begin.trigger)
    leases = begin.leases
    if not leases:
        return Flushed(begin.kind.value)
    first = leases[0]
    with (
        structlog.contextvars.bound_contextvars(
            portal=group.portal,
            groups=len(leases),
            batch=sum(len(lease.ids) for lease in leases),
            attempt=first.failures + 1,
        ),
        renewing(rt, leases),
    ):
        leases = _without_dead_ends(rt, leases)
        if not leases:
            return Flushed.DEAD_LETTER
        done: set[int] = set()
        try:
            if begin.kind is Begun.REFRESH:  # the stored token was refused: refresh, no call
                refreshed = refresh(rt, leases[0], begin.refused_code)
                actions = []
                for i, lease in enumerate(leases):
                    actions.append(after_refresh(rt, lease, refreshed))
                    done.add(i)
                return Flushed(actions[0].value)
            # call + judge: every group's answer (a failed request is every group's answer)
            answers = request.send(rt, leases, begin.packs)
            actions = settle(rt, leases, answers, done)
        except redis.RedisError:
            raise  # the store is away: the lease runs out, and the next begin counts it
        except Exception as exc:
            return _unjudged(rt, [x for i, x in enumerate(leases) if i not in done], exc)
    return Flushed.PACKED if answers.packed else Flushed(actions[0].value)


def _without_dead_ends(rt: Runtime, leases: list[Lease]) -> list[Lease]:
    """The leases to call for. A group whose flushers died holding its lease
    DELIVERY_MAX_ATTEMPTS times (each counted when the next flush took it back) is
    dead-lettered without another call: a crash that repeats never loops for ever."""
    limit = rt.settings.max_attempts
    for lease in leases:
        if lease.expired >= limit:
            error = PortalError(Outcome.TRANSIENT, "LEASE_EXPIRED", OWN_CODES["LEASE_EXPIRED"][1])
            failed(rt, lease, error, failures=max(lease.failures, limit))
    return [lease for lease in leases if lease.expired < limit]


def _unjudged(rt: Runtime, leases: list[Lease], exc: Exception) -> Flushed:
    """An exception of any class while calling or judging: the portal's answer is the likeliest
    cause, so it is a rule-breaking answer (counted on the portal), named by its class only."""
    log.exception("flush raised: settled as a bad answer", error=type(exc).__name__)
    rt.buffer.count_call(Outcome.BAD_ANSWER.value, "ANSWER_UNJUDGED")
    error = PortalError(
        Outcome.BAD_ANSWER, "ANSWER_UNJUDGED", f"{type(exc).__name__} while calling or judging"
    )
    actions = [failed(rt, lease, error) for lease in leases]
    return Flushed(actions[0].value) if actions else Flushed.RETRY
