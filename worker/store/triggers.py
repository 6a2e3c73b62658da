"""The flush trigger: at most one delayed `delivery.flush` task scheduled per group.

The protocol, in four steps:

1. **Mint**: before a script runs, Python mints a task id (`new_task_id`) and passes it in.
2. **Claim**: the script decides the group's next flush time; for a short wait it claims the
   group's trigger key (`task_id:at`, see `claim_trigger` in `lua/triggers.lua`) unless a
   trigger at least as early is already claimed, and answers `send`.
3. **Send**: when told to, Python sends the flush task with that id and the countdown (`send`).
4. **Release**: the flush task that runs under that id releases the key first thing
   (`release_trigger` in `begin.lua`), so the next trigger can be claimed.

**Ticks.** A wait (a window, a backoff, the budget) ends on the next tick, DELIVERY_FLUSH_TICK_S
apart, and the task claimed is the tick's: the first portal whose wait ends in a tick mints its
task (`delivery.flush_tick`), every later one names that task in its trigger key and sends
nothing. The tick's task lists every group whose wait ended by then (`take_tick.lua`; a group
leaves that list when its portal's flush begins) and flushes each portal as a `delivery.flush`
would (worker/flush/tick.py). So a fleet of light
portals costs one flush task per tick, not one per confirmation. A flush with no wait (a full
batch) still gets a task of its own, at once.

A lost trigger (a producer or worker dying between claim and send) is the sweep's job: the
group's due time is the trigger's time plus a grace period.

A script answers the wait as `delay_ms`, with two encodings named here and handed to Lua.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from worker.names import FLUSH_QUEUE, FLUSH_TASK, FLUSH_TICK_TASK
from worker.store.keys import Group

#: `delay_ms` when nothing is pending: no flush needed
NO_FLUSH_MS = -1
#: `delay_ms` when the portal is parked until `portal.register`
PARKED_MS = -2

SendTask = Callable[..., object]


def new_task_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Trigger:
    """What a script asks of the caller: send flush task `task_id` after `delay_s`."""

    send: bool
    task_id: str
    delay_s: float | None  # None: nothing pending; inf: the portal is parked
    tick: int | None = None  # the tick's number, when the task is a tick's

    @classmethod
    def from_script(
        cls, task_id: str, send: int, delay_ms: int, tick: int | None = None
    ) -> Trigger:
        if delay_ms == NO_FLUSH_MS:
            delay: float | None = None
        elif delay_ms == PARKED_MS:
            delay = float("inf")
        else:
            delay = delay_ms / 1000
        return cls(bool(send), task_id, delay, None if tick is None else int(tick))


def send(send_task: SendTask, group: Group, trigger: Trigger) -> None:
    """Send the flush task a script claimed (step 3); nothing when it claimed none."""
    if not trigger.send or trigger.delay_s is None:
        return
    if trigger.tick is not None:
        send_tick(send_task, trigger.tick, task_id=trigger.task_id, countdown_s=trigger.delay_s)
    else:
        send_flush(send_task, group, task_id=trigger.task_id, countdown_s=trigger.delay_s)


def send_tick(
    send_task: SendTask, tick: int, task_id: str | None = None, countdown_s: float = 0.0
) -> None:
    """The flush task of tick number `tick` on the flush queue."""
    send_task(
        FLUSH_TICK_TASK,
        kwargs={"tick": tick},
        task_id=task_id,
        countdown=countdown_s or None,
        queue=FLUSH_QUEUE,
    )


def send_flush(
    send_task: SendTask, group: Group, task_id: str | None = None, countdown_s: float = 0.0
) -> None:
    """A flush of `group` on the flush queue (the sweep sends these without a claimed id)."""
    send_task(
        FLUSH_TASK,
        kwargs={"group": group.id},
        task_id=task_id,
        countdown=countdown_s or None,
        queue=FLUSH_QUEUE,
    )
