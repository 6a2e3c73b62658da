"""The one request of a flush: a direct `imconnector.send.status.delivery` call for one leased
group (or a portal that does not pack), one `batch` request for several; a redirect is followed
once, after the endpoint checks, for either. Every group gets its own answer, in the leases'
order: a request that failed as a whole gives each group that failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from worker.errors import PortalError
from worker.flush.batch import BATCH, Answer, command, send_batch
from worker.flush.call import METHOD, Timeouts, send_status_delivery
from worker.flush.policy import Outcome
from worker.net.endpoints import moved_endpoint
from worker.runtime import Runtime
from worker.store.replies import Lease

log = structlog.stdlib.get_logger("worker.flush.request")


@dataclass(frozen=True)
class Answers:
    """Each leased group's answer, in the leases' order."""

    each: list[Answer]
    #: the request was a `batch` (a command refused inside it turns packing off)
    packed: bool
    #: the request failed as a whole with this error (counted once, as a call)
    failed: PortalError | None = None


def send(rt: Runtime, leases: list[Lease], packs: bool) -> Answers:
    """Send the leased groups' items to their portal; each group's answer. Never raises
    PortalError: a failure of the whole request is every group's answer."""
    packed = packs and len(leases) > 1
    try:
        return Answers(_post(rt, leases, leases[0].endpoint, packed), packed)
    except PortalError as exc:
        rt.buffer.count_call(exc.outcome.value, exc.code)
        error = exc
    if error.outcome is Outcome.MOVED:
        try:
            return Answers(_follow(rt, leases, error, packed), packed)
        except PortalError as again:
            if again.code != "UNSAFE_REDIRECT":  # (refused before a second call)
                rt.buffer.count_call(
                    again.outcome.value, again.code if again.code != error.code else None
                )
            error = again
    return Answers([Answer(False, error=error)] * len(leases), packed, error)


def _post(rt: Runtime, leases: list[Lease], endpoint: str, packed: bool) -> list[Answer]:
    s = rt.settings
    timeouts = Timeouts(s.http_connect_timeout_s, s.http_read_timeout_s)
    token = rt.portals.open_token(leases[0].access_token)  # stored encrypted when keys are set
    if not packed:
        (lease,) = leases
        group = lease.group
        time_block = send_status_delivery(
            endpoint, token, group.connector, group.line, lease.elements, timeouts
        )
        rt.buffer.count_call(Outcome.DONE.value)
        return [Answer(True, time=time_block)]
    commands = {
        f"g{i}": command(lease.group.connector, lease.group.line, lease.elements)
        for i, lease in enumerate(leases)
    }
    answers = send_batch(endpoint, token, commands, timeouts)
    rt.buffer.count_call(Outcome.DONE.value)
    return [answers[name] for name in commands]


def _follow(rt: Runtime, leases: list[Lease], moved: PortalError, packed: bool) -> list[Answer]:
    """The portal answered a redirect: check the new address, store it for the whole portal,
    and send the request there once. Raises PortalError (UNSAFE_REDIRECT: nothing was sent)."""
    new = store_move(rt, leases[0], moved, BATCH if packed else METHOD)
    try:
        return _post(rt, leases, new, packed)
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
