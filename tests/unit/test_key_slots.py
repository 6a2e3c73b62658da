"""Every key a script touches is in its KEYS, and which Redis Cluster hash slots they use.

Each script's declared keys (its `local x = KEYS[n]` names, and begin.lua's GROUP_KEYS for each
candidate group) are built for one group and its portal, as the store passes them. Per-portal
keys carry the portal in a hash tag, so they share one slot; the fleet-wide keys below are the
known list a move to Redis Cluster must deal with (docs/design.md, "The path to Redis Cluster").
"""

from __future__ import annotations

from importlib import resources

import pytest
from redis.crc import key_slot

from worker.store.keys import Group, Keys
from worker.store.scripts import spec

KEYS = Keys()
GROUP = Group("p1", "myconnector", 107)
#: the keys every script is given, by their script names (as the store and the portals pass them)
BY_NAME = {
    **KEYS.group_keys(GROUP),
    **KEYS.portal_keys(GROUP.portal),
    **KEYS.receipt_keys(GROUP.portal),
    "last_run_key": KEYS.sweep_last_run,
    "lock_key": KEYS.refresh_lock(GROUP.portal),
}
#: the fleet-wide keys: one slot each, not the portal's
FLEET_WIDE = {
    "due_key": KEYS.due,
    "stats_key": KEYS.stats,
    "dead_key": KEYS.dead,
    "dead_data_key": KEYS.dead_data,
    "last_run_key": KEYS.sweep_last_run,
    "receipts_due_key": KEYS.receipts_due,
    "ticks_key": KEYS.ticks,
    "soon_key": KEYS.soon,
}
#: script -> the fleet-wide keys it touches besides the portal's slot
CROSS_SLOT = {
    "begin": {"due_key", "stats_key", "ticks_key", "soon_key"},
    "claim_due": {"due_key", "last_run_key"},
    "claim_token_request": set(),
    "ingest": {"due_key", "stats_key", "ticks_key", "soon_key"},
    "ingest_many": {"due_key", "stats_key", "ticks_key", "soon_key"},
    "move_endpoint": set(),
    "receipt": {"receipts_due_key", "stats_key"},
    "receipt_ingested": set(),
    "receipts_sweep": {"receipts_due_key", "stats_key"},
    "sent": {"receipts_due_key", "stats_key"},
    "refuse": set(),
    "release_lock": set(),
    "renew": {"due_key"},
    "settle": {"due_key", "stats_key", "dead_key", "dead_data_key", "ticks_key", "soon_key"},
    "store_tokens": set(),
    "take_tick": {"ticks_key", "soon_key"},
    "wake": {"due_key"},
}
#: the Redis broker's reliable fetch: kombu's queue keys, the queue's role, not the state's (on a
#: Cluster the queue is RabbitMQ or a Redis of its own)
BROKER = {"broker_fetch", "broker_restore"}
LUA = resources.files("worker.store") / "lua"
ALL = sorted(
    p.name.removesuffix(".lua")
    for p in LUA.iterdir()
    if p.name.endswith(".lua") and p.name not in ("common.lua", "limiter.lua", "triggers.lua")
)
SCRIPTS = [name for name in ALL if name not in BROKER]


def test_every_script_is_listed() -> None:
    assert sorted(CROSS_SLOT) == SCRIPTS and set(ALL) >= BROKER


def test_the_broker_scripts_touch_no_state_key() -> None:
    for name in BROKER:
        s = spec(name)
        assert not {*s.keys, *([s.rest_keys] if s.rest_keys else [])} & set(BY_NAME), name


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_uses_the_portal_slot_and_the_listed_fleet_wide_keys(name: str) -> None:
    s = spec(name)
    declared = [*s.keys, *s.group_keys]
    portal_slot = key_slot(KEYS.portal(GROUP.portal).encode())
    slots = {key: key_slot(BY_NAME[key].encode()) for key in declared}
    elsewhere = {key for key, slot in slots.items() if slot != portal_slot}
    assert elsewhere == CROSS_SLOT[name], f"{name}.lua: {slots}"
    assert elsewhere <= set(FLEET_WIDE)


def test_no_script_builds_a_key_from_a_prefix() -> None:
    """Keys come in KEYS only: no script concatenates a key name (`.. ':'`) or takes a prefix."""
    for path in LUA.iterdir():
        text = path.read_text()
        assert "prefix" not in text.lower(), path.name
        for call in ("redis.call('ZADD', ", "redis.call('SET', ", "redis.call('HSET', "):
            for line in text.splitlines():
                if call in line:
                    key = line.split(call, 1)[1].split(",", 1)[0]
                    assert ".." not in key, f"{path.name}: {line.strip()}"
