"""The Python-Lua boundary by name: every script names its KEYS and ARGV as locals at its top,
nothing else indexes them, and the constants both sides use are generated from Python."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from worker.flush.policy import Action
from worker.store.scripts import HISTOGRAM_BOUNDS, PARKED, prelude, spec

LUA = resources.files("worker.store") / "lua"
SCRIPTS = sorted(
    p.name.removesuffix(".lua")
    for p in LUA.iterdir()
    if p.name.endswith(".lua") and p.name not in ("common.lua", "limiter.lua", "triggers.lua")
)
POSITIONAL = re.compile(r"(KEYS|ARGV)\[\d+\]|unpack\(KEYS, \d+\)")


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_names_its_keys_and_args_before_any_logic(name: str) -> None:
    lines = (LUA / f"{name}.lua").read_text().splitlines()
    code = [line for line in lines if line.strip() and not line.startswith("--")]
    header = [line for line in code if POSITIONAL.search(line)]
    assert code[: len(header)] == header, "KEYS/ARGV are read only in the named locals at the top"
    s = spec(name)
    assert s.keys and all(k.endswith("_key") for k in s.keys)
    assert len(s.keys) + len(s.args) + (s.rest_keys is not None) == len(header)


def test_a_trailing_key_list_is_passed_as_a_sequence() -> None:
    fetch = spec("broker_fetch")
    assert fetch.rest_keys == "queue_keys"
    names = {"unacked_index_key": "i", "unacked_key": "u", "holders_key": "h", "alive_key": "a"}
    args = {"holder": "x", "now": 1, "heartbeat_ttl_ms": 2}
    keys, ordered = fetch.ordered({**names, "queue_keys": ["q1", "q2"]}, args)
    assert keys == ["i", "u", "h", "a", "q1", "q2"] and ordered == ["x", 1, 2]
    with pytest.raises(TypeError, match="queue_keys"):
        fetch.ordered(names, args)
    with pytest.raises(TypeError, match="one key, not a list"):
        fetch.ordered({**names, "alive_key": ["a"], "queue_keys": []}, args)


def test_shared_helpers_never_index_keys_or_args() -> None:
    for helper in ("common.lua", "limiter.lua", "triggers.lua"):
        assert not POSITIONAL.search((LUA / helper).read_text()), helper


def test_constants_reach_lua_from_python_only() -> None:
    generated = prelude()
    assert f"local PARKED = {PARKED!r}" in generated
    for action in Action:
        assert f"local {action.name} = '{action.value}'" in generated
    for bounds in HISTOGRAM_BOUNDS.values():
        assert "{" + ", ".join(map(repr, bounds)) + "}" in generated
    for path in LUA.iterdir():
        text = path.read_text()
        assert "1e18" not in text and "1800" not in text, f"{path.name} repeats a constant"
    settle = (LUA / "settle.lua").read_text()
    assert not re.search(r"== '(delivered|dead_letter|retry|refresh|park)'", settle)


def test_a_script_taking_several_groups_names_their_keys() -> None:
    """begin.lua leases several groups: the keys it takes for each are named (GROUP_KEYS), read
    only through those names, and passed by the store after its own."""
    s = spec("begin")
    assert s.group_keys == ("items_key", "queue_key", "leased_key", "lease_key", "meta_key")
    assert all(not spec(name).group_keys for name in SCRIPTS if name != "begin")
