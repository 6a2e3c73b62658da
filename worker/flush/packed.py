"""The packed flush: up to DELIVERY_PACK_GROUPS ready groups of one portal in one `batch` request.

A portal packs when its registration says `packing: "batch"`, or says nothing and
DELIVERY_PACKING is `batch`, and the portal never refused the method inside `batch`. The flush
task of any of its groups runs `lua/begin_pack.lua`: the group joins the portal's pack, and
whoever gets a slot of the budget leases the oldest-ready groups (one slot for all of them).
Each group is then settled by its own command's answer through the same policy as a direct
call (`pipeline._failed`); a request that fails as a whole is handled as a direct call's failure
for every group in it, with at most one token refresh. `batch.plan` cuts the commands (none over
PHP's `max_input_vars`, a group over several commands when it must); a group with several
commands is delivered when all succeeded, else settled by the first error (all of it again).

A command refused as not allowed inside `batch` (`batch.NOT_PACKABLE`) turns packing off for
the portal (recorded in its hash with reason and time, shown by `portals` and `parked`, counted
as `packing_turned_off`) and puts its group back at once, to be sent as a direct call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog

from worker.errors import PortalError
from worker.flush.batch import BATCH, Answer, Plan, plan, send_batch
from worker.flush.call import Timeouts
from worker.flush.flow import _call_and_settle as direct_call
from worker.flush.flow import _failed, renewing, store_move
from worker.flush.policy import Action, Outcome
from worker.perprocess import per_process
from worker.runtime import Runtime
from worker.store.buffer import Lease
from worker.store.keys import Group, text
from worker.store.scripts import Bound, script
from worker.store.triggers import Trigger, new_task_id

log = structlog.stdlib.get_logger("worker.flush.packed")

#: the portal hash's record of a refusal: when, and the code that refused
OFF_AT, OFF_REASON = "packing_off_at", "packing_off_reason"


def packing_on(rt: Runtime, portal: str) -> bool:
    """Does this portal's flush pack (its registration's choice, else the setting's)?"""
    mode, off_at = rt.redis.hmget(rt.buffer.keys.portal(portal), ["packing", OFF_AT])
    chosen = text(mode) if mode else rt.settings.packing
    return chosen == "batch" and off_at is None


def turn_off(rt: Runtime, portal: str, code: str) -> bool:
    """Record that the portal refused the method inside `batch`; True the first time."""
    key = rt.buffer.keys.portal(portal)
    now = rt.buffer.server_time()
    if not rt.redis.hsetnx(key, OFF_AT, f"{now:.3f}"):
        return False
    rt.redis.hset(key, OFF_REASON, code)
    rt.count("packing_turned_off")
    log.warning("packing turned off for the portal", portal=portal, code=code, alert=True)
    return True


@dataclass(frozen=True)
class PackBegin:
    """`begin_pack.lua`'s answer: the leased groups (none unless kind is `leased`)."""

    kind: str  # busy | wait | throttled | leased
    trigger: Trigger | None  # the anchor's own
    leases: list[Lease]
    #: the pack's head and its trigger: it flushes the waiting groups at the next slot
    head: tuple[Group, Trigger] | None = None


def _script(rt: Runtime) -> Bound:
    return per_process(("begin_pack", id(rt.redis)), lambda: script(rt.redis, "begin_pack"))


def begin(rt: Runtime, group: Group, own_task_id: str) -> PackBegin:
    s, keys = rt.settings, rt.buffer.keys
    lease_id, task_id, head_task_id = str(uuid.uuid4()), new_task_id(), new_task_id()
    reply = _script(rt)(
        {
            **keys.group_keys(group),
            "pack_key": keys.pack(group.portal),
            "pack_slot_key": keys.pack_slot(group.portal),
        },
        {
            **rt.buffer.begin_args(group, lease_id, own_task_id, task_id),
            "group_key_prefix": keys.group_prefix(group.portal),
            "max_groups": s.pack_groups,
            "head_task_id": head_task_id,
        },
    )
    got = reply.get("trigger")
    trigger = Trigger.from_script(task_id, got["send"], got["delay_ms"]) if got else None
    head = None
    if reply.get("head"):
        h = reply["head"]
        head = (
            Group.parse(h["group_id"]),
            Trigger.from_script(head_task_id, h["send"], h["delay_ms"]),
        )
    if reply["kind"] != "leased":
        return PackBegin(reply["kind"], trigger, [], head)
    shared = reply["lease"]
    leases = [
        Lease.from_script(Group.parse(g["group_id"]), lease_id, shared, g) for g in reply["groups"]
    ]
    return PackBegin("leased", trigger, leases, head)


def flush_packed(rt: Runtime, group: Group, own_task_id: str) -> str:
    """One packed flush, started by `group`'s flush task. Returns what happened."""
    started = begin(rt, group, own_task_id)
    if started.kind == "unpacked":
        return ""  # a refresh is involved: the caller's direct flush handles it
    if started.trigger:
        rt.send_flush(group, started.trigger)
    if started.head:
        rt.send_flush(*started.head)
    if not started.leases:
        return started.kind
    items = sum(len(lease.ids) for lease in started.leases)
    with structlog.contextvars.bound_contextvars(
        portal=group.portal, groups=len(started.leases), batch=items
    ):
        return _call_and_settle(rt, started.leases)


def _call_and_settle(rt: Runtime, leases: list[Lease]) -> str:
    planned = plan([(x.group.connector, x.group.line, x.elements) for x in leases])
    for index in planned.left:  # no room in this request: first in the next, not a failure
        rt.send_flush(leases[index].group, rt.buffer.settle(leases[index], Action.RETRY).trigger)
    result = _send_pack(rt, leases, planned) if planned.commands else "direct"
    for index in planned.direct:  # too large for any request: one direct JSON call
        with renewing(rt, [leases[index]]):
            direct_call(rt, leases[index])
    return result


def _send_pack(rt: Runtime, leases: list[Lease], planned: Plan) -> str:
    s = rt.settings
    leases_sent = sorted({part.group for part in planned.commands.values()})
    first = leases[leases_sent[0]]
    # the direct ones' leases are kept too: their call comes after this one
    renewed = [leases[i] for i in leases_sent + planned.direct]
    try:
        with renewing(rt, renewed, "b24d-pack-lease-renewal"):
            answers = send_batch(
                first.endpoint,
                rt.portals.open_token(first.access_token),  # stored encrypted when keys are set
                {name: part.query for name, part in planned.commands.items()},
                Timeouts(s.http_connect_timeout_s, s.http_read_timeout_s),
            )
    except PortalError as exc:
        return _request_failed(rt, [leases[i] for i in leases_sent], exc)
    rt.count_call(Outcome.DONE.value)
    refused: list[tuple[Lease, str]] = []
    delivered = 0
    for index in leases_sent:
        lease = leases[index]
        answer = _combined([a for n, a in answers.items() if planned.commands[n].group == index])
        if answer.ok:
            reset_at = answer.time.get("operating_reset_at")
            settled = rt.buffer.settle(
                lease,
                Action.DELIVERED,
                operating_reset_at=float(reset_at) if isinstance(reset_at, int | float) else None,
            )
            rt.send_flush(lease.group, settled.trigger)
            delivered += settled.settled
        elif answer.error is not None and answer.not_packable:
            refused.append((lease, answer.error.code))
        elif answer.error is not None:
            rt.count(f"api_error:{answer.error.code}")
            with structlog.contextvars.bound_contextvars(
                connector=lease.group.connector, line=lease.group.line, batch=len(lease.ids)
            ):
                _failed(rt, lease, answer.error)
    if refused:
        turn_off(rt, first.group.portal, refused[0][1])
        for lease, code in refused:
            rt.count(f"api_error:{code}")
            # back at once, not a failure: the next flush of the group is a direct call
            settled = rt.buffer.settle(lease, Action.RETRY, code=code)
            rt.send_flush(lease.group, settled.trigger)
    log.info("pack delivered", delivered=delivered, refused=len(refused))
    return "packed"


def _combined(parts: list[Answer]) -> Answer:
    """A group's answer from its commands': a success when all succeeded (the last `time`
    block), else the first refusal or error (the whole group goes again: harmless)."""
    failed = [a for a in parts if not a.ok]
    refusals = [a for a in failed if a.not_packable]
    return (refusals or failed or parts[-1:])[0]


def _request_failed(rt: Runtime, leases: list[Lease], error: PortalError) -> str:
    """The `batch` request failed as a whole (a redirect is followed as a direct call's is)."""
    rt.count_call(error.outcome.value, error.code)
    if error.outcome is Outcome.MOVED:
        error = _moved(rt, leases[0], error)
        if error.outcome is Outcome.MOVED:  # stored: every group goes again, to the new address
            for lease in leases:
                rt.send_flush(lease.group, rt.buffer.settle(lease, Action.RETRY).trigger)
            return "moved"
    _failed_whole(rt, leases, error)
    return str(error.outcome.value)


def _moved(rt: Runtime, lease: Lease, moved: PortalError) -> PortalError:
    """The portal answered the `batch` with a redirect: store the new address for the portal
    when it passes the endpoint checks (the groups go again there); else UNSAFE_REDIRECT."""
    try:
        store_move(rt, lease, moved, BATCH)
    except PortalError as refused:
        return refused
    return moved


def _failed_whole(rt: Runtime, leases: list[Lease], error: PortalError) -> None:
    """The request failed as a whole: every group as after a direct call's failure, with one
    token refresh for all (the first group's); the others follow its result."""
    first = _failed(rt, leases[0], error)
    for lease in leases[1:]:
        if error.outcome is Outcome.AUTH:
            # refreshed: retry now; refresh failed: the portal is parked, they wait with it
            action = Action.REFRESH if first == Action.REFRESH.value else Action.RETRY
            settled = rt.buffer.settle(lease, action, code=error.code)
            rt.send_flush(lease.group, settled.trigger)
        else:
            _failed(rt, lease, error)
