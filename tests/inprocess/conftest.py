"""The buffer's state machine in-process: `Buffer`, the scripts and `pipeline.flush` driven
directly, against the real Redis and the simulator over HTTP, with a recording `send_task`.
No worker process: each test runs in milliseconds and sees every state change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from b24sim import PortalConfig, Simulator
from worker.ingest.validation import registration
from worker.runtime import Runtime
from worker.settings import Settings
from worker.store.keys import Group

GROUP = Group("p1", "myconnector", 107)


@dataclass(frozen=True)
class Sent:
    name: str
    kwargs: dict[str, Any]
    task_id: str | None
    countdown: float | None
    queue: str | None


@dataclass
class SentTasks:
    """A `send_task` that records every call instead of sending it."""

    calls: list[Sent] = field(default_factory=list)

    def __call__(
        self,
        name: str,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        countdown: float | None = None,
        queue: str | None = None,
        **_: Any,
    ) -> None:
        self.calls.append(Sent(name, dict(kwargs or {}), task_id, countdown, queue))


@pytest.fixture
def sent() -> SentTasks:
    return SentTasks()


@pytest.fixture
def make_rt(
    settings: Settings, sim: Simulator, r: redis.Redis, sent: SentTasks
) -> Callable[..., Runtime]:
    """A Runtime on the test's Redis, the simulator's OAuth server and a recording send_task;
    keyword arguments override settings."""

    def make(**overrides: Any) -> Runtime:
        chosen = settings.with_overrides(oauth_url=sim.oauth_url, **overrides)
        return Runtime.create(chosen, sent, client=r)

    return make


@pytest.fixture
def rt(make_rt: Callable[..., Runtime]) -> Runtime:
    return make_rt()


def register(rt: Runtime, sim: Simulator, config: PortalConfig | None = None) -> None:
    """Add a portal to the simulator and run what `portal.register` runs."""
    creds = sim.add_portal(config or PortalConfig(member_id=GROUP.portal))
    rt.portals.register(registration(creds.as_register_kwargs(), rt.settings.endpoint_networks))


def element(message_id: int) -> dict[str, Any]:
    return {
        "im": {"chat_id": 323, "message_id": message_id},
        "message": {"id": [f"ext-{message_id}"], "date": 1738065600},
        "chat": {"id": "channel-123"},
    }


def fill(rt: Runtime, n: int, group: Group = GROUP, first: int = 1) -> None:
    for i in range(first, first + n):
        rt.buffer.ingest(group, str(i), element(i))
