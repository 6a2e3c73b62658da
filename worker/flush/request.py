"""The one request of a flush: a direct `imconnector.send.status.delivery` call for one leased
group (or a portal that does not pack), one `batch` request for several; a redirect is followed
once, after the endpoint checks, for either. Every group gets its own answer, in the leases'
order: a request that failed as a whole gives each group that failure.

A `batch` is cut by `batch.plan` (no command over PHP's `max_input_vars`, a group over several
commands when it must, at most 50 commands): a group that does not fit after the others is not
sent (back at once, first in the next call); one no request can carry goes as its own direct
call after the `batch`. A group sent as several commands is delivered when all succeeded, else
answered by the first refusal or error (all of it goes again: harmless).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import structlog

from worker.errors import PortalError
from worker.flush.batch import BATCH, Answer, Plan, plan, send_batch
from worker.flush.call import METHOD, Timeouts, send_status_delivery
from worker.flush.policy import Outcome
from worker.runtime import Runtime
from worker.store.replies import Lease

log = structlog.stdlib.get_logger("worker.flush.request")


class Sent(enum.Enum):
    """How a group's answer came."""

    CALL = "call"  # the answer of a whole request (a direct call, or a `batch` that failed)
    COMMAND = "command"  # its own command(s) inside a `batch` answer
    UNSENT = "unsent"  # no room in this `batch`: back at once, not a failure


@dataclass(frozen=True)
class Reply:
    """One leased group's answer, and how it came."""

    answer: Answer
    sent: Sent


@dataclass(frozen=True)
class Answers:
    """Each leased group's reply, in the leases' order."""

    each: list[Reply]
    #: a `batch` request was made
    packed: bool


def send(rt: Runtime, leases: list[Lease], packs: bool) -> Answers:
    """Send the leased groups' items to their portal; each group's reply. Never raises
    PortalError: a failure of a whole request is the answer of each group it carried."""
    if not packs or len(leases) == 1:
        return Answers(_call(rt, leases), packed=False)
    planned = plan([(x.group.connector, x.group.line, x.elements) for x in leases])
    replies: dict[int, Reply] = {i: Reply(Answer(False), Sent.UNSENT) for i in planned.left}
    sent = sorted({part.group for part in planned.commands.values()})
    if sent:
        replies.update(zip(sent, _call(rt, [leases[i] for i in sent], planned), strict=True))
    for i in planned.direct:  # too large for any `batch`: one direct JSON call
        (replies[i],) = _call(rt, [leases[i]])
    return Answers([replies[i] for i in range(len(leases))], packed=bool(sent))


def _call(rt: Runtime, leases: list[Lease], planned: Plan | None = None) -> list[Reply]:
    """One request for `leases` (a `batch` of the planned commands, else a direct call for the
    one lease), a redirect followed once."""
    try:
        return _post(rt, leases, leases[0].endpoint, planned)
    except PortalError as exc:
        rt.buffer.count_call(exc.outcome.value, exc.code)
        error = exc
    if error.outcome is Outcome.MOVED:
        try:
            return _follow(rt, leases, error, planned)
        except PortalError as again:
            if again.code != "UNSAFE_REDIRECT":  # (refused before a second call)
                rt.buffer.count_call(
                    again.outcome.value, again.code if again.code != error.code else None
                )
            error = again
    return [Reply(Answer(False, error=error), Sent.CALL)] * len(leases)


def call_limits(rt: Runtime) -> Timeouts:
    """The bounds of one call to a portal (worker/net/answer.py)."""
    s = rt.settings
    return Timeouts(
        s.http_connect_timeout_s,
        s.http_read_timeout_s,
        s.http_total_timeout_s,
        s.http_max_answer_bytes,
    )


def _post(rt: Runtime, leases: list[Lease], endpoint: str, planned: Plan | None) -> list[Reply]:
    timeouts = call_limits(rt)
    token = rt.portals.open_token(leases[0].access_token)  # stored encrypted when keys are set
    session = rt.portals.session  # judges the endpoint and every connection (worker/net/)
    if planned is None:
        (lease,) = leases
        group = lease.group
        time_block = send_status_delivery(
            endpoint, token, group.connector, group.line, lease.elements, timeouts, session
        )
        # (counted by the group's settle: worker/flush/settle.py `delivered`)
        return [Reply(Answer(True, time=time_block), Sent.CALL)]
    queries = {name: part.query for name, part in planned.commands.items()}
    answers = send_batch(endpoint, token, queries, timeouts, session)
    rt.buffer.count_call(Outcome.DONE.value)
    parts: dict[int, list[Answer]] = {}
    for name, part in planned.commands.items():
        parts.setdefault(part.group, []).append(answers[name])
    return [Reply(_combined(parts[g]), Sent.COMMAND) for g in sorted(parts)]


def _combined(parts: list[Answer]) -> Answer:
    """A group's answer from its commands': a success when all succeeded (the last `time`
    block), else the first refusal or error."""
    failed = [a for a in parts if not a.ok]
    refusals = [a for a in failed if a.not_packable]
    return (refusals or failed or parts[-1:])[0]


def _follow(
    rt: Runtime, leases: list[Lease], moved: PortalError, planned: Plan | None
) -> list[Reply]:
    """The portal answered a redirect: check the new address, store it for the whole portal,
    and send the request there once. Raises PortalError (UNSAFE_REDIRECT: nothing was sent)."""
    new = store_move(rt, leases[0], moved, METHOD if planned is None else BATCH)
    try:
        return _post(rt, leases, new, planned)
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
    new, why = rt.portals.trust.moved_endpoint(
        moved.location, lease.endpoint + method, method, lease.endpoint
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
