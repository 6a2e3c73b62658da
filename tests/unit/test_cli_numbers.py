"""`b24-delivery stats` prints the stats hash's values as JSON numbers (they were strings)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.cli.inspect import number


def test_counters_are_integers_and_sums_are_fractions() -> None:
    assert number("7") == 7 and isinstance(number("7"), int)
    assert number("3616.22337698936462802") == 3616.22337698936462802
    assert number("-1") == -1
    assert number("not a number") == "not a number"


@given(st.integers())
def test_any_integer_round_trips(value: int) -> None:
    assert number(str(value)) == value


@given(st.text())
def test_any_text_gives_a_value_and_never_raises(raw: str) -> None:
    assert isinstance(number(raw), int | float | str)
