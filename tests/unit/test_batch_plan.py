"""Packed commands under PHP's `max_input_vars`, a pure function (`worker/flush/batch.py` `plan`).

The platform parses each `batch` command's query with PHP's `parse_str` (`rest_util.php`
`ParseBatchQuery`), which stops at `max_input_vars` (1000 by default) without an error, and runs
at most 50 commands (`rest_provider.php` `methodsBatch`). No planned command may exceed
`COMMAND_MAX_VARS`, no request may hold more than 50 commands, and every item is sent exactly
once, left for the next call, or sent directly: never lost, never doubled.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.flush.batch import (
    COMMAND_MAX_VARS,
    MAX_COMMANDS,
    PHP_MAX_INPUT_VARS,
    element_variables,
    plan,
)


def _element(n: int, ids: int = 1) -> dict[str, Any]:
    element: dict[str, Any] = {"im": {"chat_id": 1, "message_id": n}}
    if ids:
        element["message"] = {"id": [f"x{n}-{i}" for i in range(ids)], "date": 1738065600}
        element["chat"] = {"id": "c"}
    return element


def _vars(query: str) -> int:
    """What PHP's parse_str counts against max_input_vars: one per `&`-separated pair."""
    return len(parse_qsl(query.partition("?")[2], keep_blank_values=True))


def test_an_element_counts_one_variable_per_leaf() -> None:
    assert element_variables(_element(1, ids=0)) == 2  # im[chat_id], im[message_id]
    assert element_variables(_element(1, ids=1)) == 5  # + message[id][0], message[date], chat[id]
    assert element_variables(_element(1, ids=100)) == 104  # message.id holds up to 100 ids


def test_the_cap_leaves_a_margin_under_php_default() -> None:
    assert COMMAND_MAX_VARS <= 0.9 * PHP_MAX_INPUT_VARS
    assert MAX_COMMANDS == 50


def test_a_usual_group_is_one_command() -> None:
    elements = [_element(i) for i in range(50)]
    got = plan([("conn", 7, elements)])
    assert list(got.commands) == ["g0"]
    assert got.commands["g0"].variables == 2 + 50 * 5 == _vars(got.commands["g0"].query)
    assert not got.left and not got.direct


def test_a_group_of_many_external_ids_is_split_over_commands() -> None:
    elements = [_element(i, ids=100) for i in range(50)]  # 5202 variables in one command
    got = plan([("conn", 7, elements)])
    assert len(got.commands) == 7  # 8 elements (834 variables) per command
    for part in got.commands.values():
        assert _vars(part.query) == part.variables <= COMMAND_MAX_VARS
    covered = [i for p in got.commands.values() for i in range(p.start, p.stop)]
    assert covered == list(range(50))


def test_groups_past_fifty_commands_wait_for_the_next_call_in_order() -> None:
    big = [_element(i, ids=100) for i in range(50)]  # 7 commands each
    got = plan([("a", 1, big)] * 9)
    assert len(got.commands) == 49 and got.left == [7, 8] and not got.direct


def test_a_group_no_request_can_carry_goes_direct() -> None:
    huge = [_element(i, ids=100) for i in range(1000)]  # DELIVERY_BATCH_SIZE=1000: 125 commands
    got = plan([("a", 1, [_element(1)]), ("b", 2, huge)])
    assert list(got.commands) == ["g0"] and got.direct == [1] and not got.left


elements_st = st.lists(
    st.builds(_element, st.integers(1, 10**6), st.integers(0, 100) | st.sampled_from([0, 1, 2])),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(elements_st, min_size=1, max_size=12),
    st.integers(1, 50),
    st.integers(110, COMMAND_MAX_VARS),
)
def test_no_command_over_the_cap_and_every_item_once(
    groups: list[list[dict[str, Any]]], max_commands: int, max_vars: int
) -> None:
    got = plan(
        [("c", n + 1, els) for n, els in enumerate(groups)],
        max_commands=max_commands,
        max_vars=max_vars,
    )
    assert len(got.commands) <= max_commands
    sent: dict[int, list[int]] = {}
    for part in got.commands.values():
        assert part.variables <= max_vars
        assert _vars(part.query) == part.variables
        sent.setdefault(part.group, []).extend(range(part.start, part.stop))
    for index, elements in enumerate(groups):
        places = [index in sent, index in got.left, index in got.direct]
        assert places.count(True) == 1  # sent, left pending, or direct: exactly one of them
        if index in sent:
            assert sent[index] == list(range(len(elements)))  # each item exactly once, in order
