"""Unit tests with fake clocks: leaky bucket, operating meter; parsing and the shipped spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b24sim import METHOD, LeakyBucket, OperatingMeter, load_spec, validate
from b24sim.validate import parse_php_pairs


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_bucket_exact_numbers() -> None:
    clock = Clock()
    b = LeakyBucket(2.0, 50, clock=clock)
    assert all(b.try_add() for _ in range(50))
    assert not b.try_add()
    assert b.level == 50
    clock.t += 0.49
    assert not b.try_add()  # 49.02 + 1 > 50
    clock.t += 0.01
    assert b.try_add()  # drained 1.0
    clock.t += 100
    assert b.level == 0


@given(st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200))
def test_bucket_never_exceeds_burst(gaps: list[float]) -> None:
    clock = Clock()
    b = LeakyBucket(5.0, 10, clock=clock)
    for g in gaps:
        clock.t += g
        b.try_add()
        assert 0 <= b.level <= 10


def test_operating_meter_window_and_reset() -> None:
    clock = Clock(600.0)
    m = OperatingMeter(limit_s=3, bucket_s=60, n_buckets=10, clock=clock)
    assert m.check() == (False, 0.0, 1200.0)
    m.add(2)
    clock.t = 660.0
    total, reset_at = m.add(2)
    assert total == 4
    blocked, _, reset_at = m.check()
    assert blocked
    assert reset_at == 1200.0
    clock.t = 1199.9
    assert m.check()[0]
    clock.t = 1200.0
    assert m.check()[:2] == (False, 2.0)


def test_php_pairs() -> None:
    got = parse_php_pairs(
        [
            ("MESSAGES[0][im][chat_id]", "1"),
            ("MESSAGES[0][message][id][]", "a"),
            ("MESSAGES[0][message][id][]", "b"),
            ("MESSAGES[1][im][chat_id]", "2"),
            ("LINE", "3"),
        ]
    )
    assert got == {
        "MESSAGES": [
            {"im": {"chat_id": "1"}, "message": {"id": ["a", "b"]}},
            {"im": {"chat_id": "2"}},
        ],
        "LINE": "3",
    }


def test_spec_is_the_reference_copy() -> None:
    ref = Path(__file__).resolve().parents[2] / "b24sim" / "spec" / f"{METHOD}.json"
    assert load_spec() == json.loads(ref.read_text())
    spec = load_spec()
    assert validate(spec["requestExample"]) is None


@pytest.mark.parametrize("missing", ["CONNECTOR", "LINE", "MESSAGES"])
def test_validate_required(missing: str) -> None:
    params = dict(load_spec()["requestExample"])
    del params[missing]
    assert validate(params) == f"Argument {missing} is null or empty"
